"""Geographic cross-validation (Diaconu & Bamber 2023): glaciers sorted west to east are cut
into K folds of equal glacierised area; each fold is predicted by a model that never saw
it, so the whole region gets out-of-sample predictions for area change.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from scipy import ndimage

from ..geodesy import ellipsoidal_area_km2, to_lonlat
from ..io import GTIFF_PROFILE, atomic_output, remove_partials
from ..labels import Inventory, rasterize_ids
from .metrics import add, confusion, mean_std, scores
from .patches import extract_patches
from .plausibility import map_check, out_of_fold_warning
from ..progress import Progress
from .segment import PROBABILITY_BAND, SegmentOptions, pick_device, segment
from .features import check as check_features
from .train import TrainOptions, default_bands, glacier_centres_km, member_path, split_glaciers, standardise, train_member


MASK_BUFFER_M = 500.0  # fold models predict within this distance of their glaciers


def geographic_folds(inventory: Inventory, k: int) -> list[int]:
    """Fold (0..k-1) of each glacier: west to east by centroid longitude, equal area."""
    if k < 2:
        raise ValueError(f"FOLDS must be at least 2, not {k}")
    n = len(inventory.geometries)
    if n < k:
        raise ValueError(f"FOLDS ({k}) exceeds the number of glaciers ({n})")
    lon = np.array([to_lonlat(g, inventory.crs).centroid.x if g is not None else np.inf
                    for g in inventory.geometries])
    area = np.array([ellipsoidal_area_km2(g, inventory.crs) for g in inventory.geometries])
    order = np.argsort(lon, kind="stable")
    cum = np.cumsum(area[order]) - area[order] / 2  # each glacier's area midpoint
    folds = np.empty(n, int)
    folds[order] = np.minimum((cum / area.sum() * k).astype(int), k - 1)
    # Never an empty fold (one huge glacier can swallow a fold's share): fill from neighbours.
    for f in range(k):
        if not (folds == f).any():
            donor = max(range(k), key=lambda d: (folds == d).sum())
            members = order[folds[order] == donor]
            folds[members[0] if f < donor else members[-1]] = f
    return folds.tolist()


@dataclass
class FoldResult:
    fold: int
    n_patches: int
    n_glaciers: int
    scores: dict
    model: Path                                   # the first member's
    members: list = field(default_factory=list)  # every member's model


@dataclass
class CrossValidation:
    folds: list            # fold of each inventory glacier
    results: list          # FoldResult per fold
    mean: dict
    std: dict
    predictions: list = field(default_factory=list)  # out-of-fold probability raster per input
    warnings: list = field(default_factory=list)

    def table(self) -> list[dict]:
        """Rows in the layout of the paper's Table 1, then mean and std."""
        rows = [dict(subregion=f"fold {r.fold + 1}", patches=r.n_patches, glaciers=r.n_glaciers,
                     **r.scores) for r in self.results]
        rows.append(dict(subregion="mean", patches=sum(r.n_patches for r in self.results),
                         glaciers=sum(r.n_glaciers for r in self.results), **self.mean))
        rows.append(dict(subregion="std", patches=None, glaciers=None, **self.std))
        return rows


def compose_out_of_fold(raster, fold_probabilities, inventory: Inventory, folds, output,
                        reach_m: float = 500.0, block_rows: int = 1024):
    """One probability raster: each pixel from the model of the fold of its nearest glacier
    (a fold's entry may be a list of its members' rasters: their mean).
    Fold predictions exist only within `reach_m` of their glaciers, so the nearest glacier
    of any pixel that has a value lies within reach_m: each block of rows needs the
    outlines of itself plus reach_m above and below, never a whole-raster distance map."""
    with rasterio.open(raster) as src:
        profile = dict(GTIFF_PROFILE, width=src.width, height=src.height, count=1,
                       crs=src.crs, transform=src.transform, dtype="float32",
                       nodata=float("nan"), predictor=3)
        tags = {k: v for k, v in src.tags().items() if k in ("DATE", "DATETIME", "SCENE_ID")}
        if not len(inventory.near(src.crs, src.bounds)):
            raise ValueError(f"no inventory glacier on {raster}")
    pixel = abs(profile["transform"].a)
    margin = int(np.ceil(reach_m / pixel)) + 2
    H, W = profile["height"], profile["width"]
    fold_of_id = np.concatenate([[-1], np.asarray(folds)])
    with contextlib.ExitStack() as stack:
        srcs = [[stack.enter_context(rasterio.open(m)) for m in ([p] if isinstance(p, (str, Path)) else p)]
                for p in fold_probabilities]
        tmp = stack.enter_context(atomic_output(output))
        dst = stack.enter_context(rasterio.open(tmp, "w", **profile))
        dst.set_band_description(1, PROBABILITY_BAND + " (out of fold)")
        dst.update_tags(**tags, CROSS_VALIDATION="each pixel from the model of its nearest glacier's fold")
        for y in range(0, H, block_rows):
            h = min(block_rows, H - y)
            y0, y1 = max(y - margin, 0), min(y + h + margin, H)
            ids = rasterize_ids(inventory, profile["crs"], rasterio.windows.transform(
                Window(0, y0, W, y1 - y0), profile["transform"]), (y1 - y0, W))
            out = np.full((h, W), np.nan, np.float32)
            win = Window(0, y, W, h)
            if ids.any():
                dist, (ri, ci) = ndimage.distance_transform_edt(ids == 0, return_indices=True)
                core = slice(y - y0, y - y0 + h)
                fold_map = fold_of_id[ids[ri, ci]][core]
                fold_map[dist[core] > margin] = -1  # beyond every fold's predictions
                for f, members in enumerate(srcs):
                    sel = fold_map == f
                    if sel.any():
                        prob = members[0].read(1, window=win)
                        for m in members[1:]:
                            prob += m.read(1, window=win)
                        if len(members) > 1:
                            prob /= len(members)
                        out[sel] = prob[sel]
            dst.write(out, 1, window=win)
    return Path(output)


def cross_validate(rasters, inventory: Inventory, output_folder, dem_path=None, k: int = 5,
                   options: TrainOptions | None = None, progress: Progress | None = None,
                   predict: bool = True, members: int = 1, pool=None) -> CrossValidation:
    """One model per geographic fold (MEMBERS models per fold, seeds SEED, SEED + 1, ...,
    averaged), its test metrics, and out-of-fold predictions. Every fold x member training,
    fold test and fold x member prediction is a piece of `pool`: side by side on a cluster."""
    from ..cluster import LocalPool
    opts = options or TrainOptions()
    progress = progress or Progress()
    pool = pool or LocalPool()
    if members < 1:
        raise ValueError(f"MEMBERS must be at least 1, not {members}")
    rasters = [str(Path(r).resolve()) for r in rasters]  # workers have another working directory
    dem_path = str(Path(dem_path).resolve()) if dem_path else None
    output_folder = Path(output_folder).resolve()
    output_folder.mkdir(parents=True, exist_ok=True)
    folds = geographic_folds(inventory, k)
    bands = list(opts.bands) if opts.bands else default_bands(rasters[0], dem_path)
    check_features(list(opts.features), bands)
    ps = extract_patches(rasters, inventory, bands, opts.patch_size, dem_path, opts.mapping,
                         opts.quality, progress=progress.sub(0.0, 0.05), cache_root=opts.patch_cache,
                         features=list(opts.features))
    ps.close()
    of = np.array([p.glacier for p in ps.patches], int)
    share = 0.85 if predict else 1.0
    centres = glacier_centres_km(inventory)
    trainings, tests = [], []
    for f in range(k):
        test_g = [i + 1 for i, fo in enumerate(folds) if fo == f]
        rest = [i + 1 for i, fo in enumerate(folds) if fo != f]
        train_g, val_g = split_glaciers(rest, opts.val_fraction, opts.seed + f, centres)
        progress.info(f"fold {f + 1}/{k}: {len(test_g)} test glaciers, {len(train_g)} training, "
                      f"{len(val_g)} validation" + (f", {members} members" if members > 1 else ""))
        fold_opts = replace(opts, bands=bands, train_glaciers=train_g + val_g, val_glaciers=val_g)
        models = [str(member_path(output_folder / f"fold_{f + 1}.gmm", opts.seed + m, m)) for m in range(members)]
        trainings += [(models[m], dem_path, replace(fold_opts, seed=opts.seed + m), str(ps.folder))
                      for m in range(members)]
        tests.append((models, str(ps.folder), np.nonzero(np.isin(of, test_g))[0].tolist(), opts.device))
    gpu = opts.device == "cuda"
    try:
        pool.run(train_member, trainings, progress.sub(0.05, share - 0.02), gpu=gpu, common=(rasters, inventory),
                 done=lambda i, r: f"fold {i // members + 1}" + (f" member {i % members + 1}" if members > 1 else "")
                                   + f": best epoch {r['best_epoch']}, validation IoU {r['val_iou']}")
        if pool.remote:
            remove_partials(t[0] for t in trainings)
        confusions = pool.run(fold_confusion, tests, progress.sub(share - 0.02, share), gpu=gpu)
        results = []
        for f, ((models, _, test_idx, _), conf) in enumerate(zip(tests, confusions)):
            results.append(FoldResult(f, len(test_idx), len(set(of[test_idx].tolist())), scores(conf),
                                      Path(models[0]), [Path(m) for m in models]))
            progress.info(f"fold {f + 1}: IoU {results[-1].scores['iou']:.4f}, "
                          f"F1 {results[-1].scores['f1']:.4f} on {len(test_idx)} test patches")
        mean, std = mean_std([r.scores for r in results])
        cv = CrossValidation(folds, results, mean, std)
        if predict:
            cv.predictions = _out_of_fold(rasters, inventory, folds, results, dem_path, opts, output_folder,
                                          progress.sub(share, 1.0), pool)
            from .model_file import read_header
            threshold = read_header(results[0].model).threshold
            warning = out_of_fold_warning(mean["iou"], _map_confusion(cv.predictions, inventory, threshold))
            if warning:
                cv.warnings.append(warning)
                progress.warning(warning)
    finally:
        if not opts.keep_patches:
            shutil.rmtree(ps.folder, ignore_errors=True)
    return cv


def fold_confusion(models, patch_folder, indices, device, *, progress: Progress) -> dict:
    """Pooled confusion of a fold's models (their mean probability: the ensemble) on its
    test patches, valid pixels only."""
    from .model_file import read_header
    from .patches import PatchCache
    from .segment import Network
    header = read_header(models[0])
    net = Network(list(models), pick_device(device), "fp32")  # the members in one network
    ps = PatchCache(patch_folder)
    total = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    try:
        for b0 in range(0, len(indices), 8):
            progress.update(b0 / max(len(indices), 1))
            x, y, valid = ps.arrays(indices[b0:b0 + 8])
            x = standardise(x, valid, header.mean, header.std)
            prob = net(x).mean(1)
            for j in range(len(x)):
                total = add(total, confusion(prob[j] >= header.threshold, y[j] > 0, valid[j]))
    finally:
        ps.close()
    return total


def segment_fold(raster, members, output, dem_path, options, *, progress: Progress):
    """One fold's prediction of a raster (a piece of the pool): its members as one ENSEMBLE
    run, so each tile is read and decoded once and the members go through one network call;
    the probability written is the members' mean."""
    return segment(raster, members[0], output, None, None, dem_path, options, progress, ensemble=members[1:])


def _out_of_fold(rasters, inventory, folds, results, dem_path, opts, output_folder, progress, pool):
    """Each raster predicted by every fold's models near that fold's glaciers (pieces of the
    pool), then composed here, pixel by pixel from the nearest glacier's fold."""
    scratch = Path(tempfile.mkdtemp(prefix=".folds-", dir=output_folder))
    try:
        items, layout = [], []
        for j, raster in enumerate(rasters):
            near, crs = _near(inventory, raster, MASK_BUFFER_M)  # once per raster, not per fold
            local = inventory.subset(near).to_crs(crs).geometries
            per_fold = []
            for r in results:
                geoms = [g for g, i in zip(local, near) if folds[i] == r.fold]
                seg = SegmentOptions(tile_size=max(256, opts.patch_size * 2), overlap=opts.patch_size // 4,
                                     device=opts.device, bands=opts.mapping, mask_geometries=geoms,
                                     mask_buffer_m=MASK_BUFFER_M)
                out = str(scratch / f"{j}_fold{r.fold + 1}.tif")
                items.append((raster, [str(m) for m in r.members], out, dem_path, seg))
                per_fold.append(out)
            layout.append(per_fold)
        pool.run(segment_fold, items, progress.sub(0.0, 0.9), gpu=opts.device == "cuda")
        predictions = []
        for j, raster in enumerate(rasters):
            predictions.append(compose_out_of_fold(
                raster, layout[j], inventory, folds,
                output_folder / f"{Path(raster).stem}_out_of_fold_probability.tif", MASK_BUFFER_M))
            progress.update(0.9 + 0.1 * (j + 1) / len(rasters), f"out-of-fold prediction: {predictions[-1].name}")
        return predictions
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _map_confusion(predictions, inventory: Inventory, threshold: float) -> dict:
    """The out-of-fold maps against the inventory (decimated reads), summed over the rasters."""
    total = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for path in predictions:
        near, crs = _near(inventory, path, 0.0)
        check = map_check(path, threshold, inventory.subset(near).to_crs(crs).geometries)
        if check["reference"] is not None:
            total = add(total, check)
    total["iou"] = scores(total)["iou"] if any(total.values()) else float("nan")
    return total


def _near(inventory: Inventory, raster, buffer_m: float):
    """(indices of the outlines within buffer_m of the raster, the raster's CRS)."""
    with rasterio.open(raster) as src:
        left, bottom, right, top = src.bounds
        bounds = (left - buffer_m, bottom - buffer_m, right + buffer_m, top + buffer_m)
        return inventory.near(src.crs, bounds), src.crs.to_wkt()
