"""Segmentation accuracy on a real benchmark, in the loop (issue 26): ../shared/data/everest_west
(Landsat 7 ETM+ RED, GREEN, BLUE, NIR at 30 m over Khumbu, 2000-10-30; RGI 6.0 outlines).

The split is spatial and fixed: the crop's 655 rows run north to south; the model trains on
rows 0-299 (north, 9 km), rows 300-339 (1.2 km) are a gap that neither side sees, and rows
340-654 (south, 9.5 km) are the test part. Training goes through the code of train_model
(core.segmentation.train.train_model, validation on glaciers it does not train on), the test
part through the code of segment_glaciers (core.segmentation.segment.segment); the map is
scored pixel by pixel against the RGI outlines rasterised on the test grid.

Printed, for each seed and as mean and spread (max - min) over the seeds: IoU, precision,
recall, F1 and the recall on the darkest third of the glacier pixels (by RGB brightness:
debris-covered tongues and shadowed ice), beside two baselines computed in the same run on the
same split: a brightness threshold chosen on the train part (the scene has no SWIR band, so
no NDSI), and a random forest (xgboost's) on the bands, NDVI and multi-scale smoothed
brightness and NIR, trained on the train part.

  .venv/bin/python scripts/bench_accuracy.py --quick     # 3 seeds, short training: < 10 min on 2 cores
  .venv/bin/python scripts/bench_accuracy.py             # 3 seeds, 30 epochs (the issue's setting)

Results and command go to docs/benchmarks.md ("Segmentation accuracy").
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio import features
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "everest_west"
TRAIN_ROWS, TEST_ROWS = (0, 300), (340, 655)  # rows 300-339: the gap


def crop(src_path: Path, rows, out: Path) -> Path:
    with rasterio.open(src_path) as src:
        window = Window(0, rows[0], src.width, rows[1] - rows[0])
        profile = dict(src.profile, height=window.height, transform=src.window_transform(window))
        data = src.read(window=window)
        descriptions = src.descriptions
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions, start=1):
            dst.set_band_description(i, d)
    return out


def truth_on(raster: Path, inventory) -> np.ndarray:
    with rasterio.open(raster) as src:
        geoms = inventory.to_crs(src.crs.to_wkt()).geometries
        return features.rasterize([(g, 1) for g in geoms if g is not None and not g.is_empty],
                                  out_shape=(src.height, src.width), transform=src.transform, dtype="uint8") > 0


def scores(pred: np.ndarray, truth: np.ndarray, dark: np.ndarray) -> dict:
    tp, fp, fn = int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())
    return {"iou": tp / max(tp + fp + fn, 1), "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
            "f1": 2 * tp / max(2 * tp + fp + fn, 1), "dark_recall": float(pred[dark].mean()) if dark.any() else float("nan")}


def brightness(stack: np.ndarray) -> np.ndarray:
    return stack[:3].astype(np.float32).mean(axis=0)  # RED, GREEN, BLUE


def threshold_baseline(train_stack, train_truth, test_stack) -> tuple[np.ndarray, int]:
    """The brightness threshold with the best IoU on the train part (every 8-bit level tried)."""
    b = np.rint(brightness(train_stack)).astype(int).ravel()
    t = train_truth.ravel()
    glacier = np.bincount(b, weights=t, minlength=256)
    total = np.bincount(b, minlength=256)
    above_g = np.cumsum(glacier[::-1])[::-1]  # glacier pixels at or above each level
    above = np.cumsum(total[::-1])[::-1]
    iou = above_g / np.maximum(t.sum() + above - above_g, 1)
    level = int(np.argmax(iou))
    return brightness(test_stack) >= level, level


def rf_features(stack: np.ndarray) -> np.ndarray:
    from scipy import ndimage
    bands = stack.astype(np.float32)
    b = brightness(stack)
    red, nir = bands[0], bands[3]
    ndvi = (nir - red) / np.maximum(nir + red, 1.0)
    layers = [*bands, b, ndvi]
    for sigma in (2, 6, 15):  # the multi-scale context a pixel classifier otherwise lacks
        layers += [ndimage.gaussian_filter(b, sigma), ndimage.gaussian_filter(nir, sigma)]
    layers.append(np.sqrt(np.maximum(ndimage.gaussian_filter(b * b, 3) - ndimage.gaussian_filter(b, 3) ** 2, 0)))
    return np.stack(layers, axis=-1).reshape(-1, len(layers))


def forest_baseline(train_stack, train_truth, test_stack, seed: int) -> np.ndarray:
    import xgboost
    x, y = rf_features(train_stack), train_truth.ravel().astype(int)
    pick = np.random.default_rng(seed).choice(len(y), min(len(y), 60_000), replace=False)
    # xgboost's random-forest mode (one round of 150 parallel trees, no shrinkage): the
    # engine has xgboost already, scikit-learn it does not need.
    params = {"objective": "binary:logistic", "num_parallel_tree": 150, "learning_rate": 1.0, "max_depth": 12,
              "subsample": 0.8, "colsample_bynode": 0.6, "seed": seed, "nthread": os.cpu_count()}
    forest = xgboost.train(params, xgboost.DMatrix(x[pick], label=y[pick]), num_boost_round=1)
    prob = forest.predict(xgboost.DMatrix(rf_features(test_stack)))
    return (prob >= 0.5).reshape(test_stack.shape[1:])


def _core(module: str):
    """A core module of the code under test: this checkout's layout, or the flat core/ of
    commits before the domains (--code, for bisecting)."""
    import importlib
    try:
        return importlib.import_module(f"glacier_mapper_plugin.core.segmentation.{module}")
    except ImportError:
        return importlib.import_module(f"glacier_mapper_plugin.core.{module}")


def unet(train: Path, test: Path, inventory, work: Path, seed: int, epochs: int, patch: int, encoder: str,
         extra: dict | None = None, variants=None):
    """Train one model, segment the test part with each variant (name -> SegmentOptions
    fields, e.g. tta, precision): ({name: (probability, seconds)}, training result, training
    seconds)."""
    import dataclasses
    training, segmenting = _core("train"), _core("segment")
    model = work / f"unet_seed{seed}.gmm"
    wanted = dict(patch_size=patch, encoder=encoder, epochs=epochs, batch_size=8, device="cpu", seed=seed,
                  patch_cache=str(work / "patches"), **(extra or {}))
    known = {f.name for f in dataclasses.fields(training.TrainOptions)}
    t0 = time.perf_counter()
    result = training.train_model([train], inventory, model, None,
                                  training.TrainOptions(**{k: v for k, v in wanted.items() if k in known}))
    trained = time.perf_counter() - t0
    maps = {}
    for name, variant in (variants or {"none": {}}).items():
        probability = work / f"probability_seed{seed}_{name.replace(', ', '_')}.tif"
        options = dict(tile_size=256, overlap=64, device="cpu", **variant)
        known = {f.name for f in dataclasses.fields(segmenting.SegmentOptions)}
        t0 = time.perf_counter()
        try:
            segmenting.segment(test, model, probability,
                               options=segmenting.SegmentOptions(**{k: v for k, v in options.items() if k in known}))
        except ValueError as err:  # a model that loses too much by int8 is refused: said, not scored
            print(f"  seed {seed}, {name}: refused: {err}", flush=True)
            continue
        with rasterio.open(probability) as src:
            maps[name] = (np.nan_to_num(src.read(1)), time.perf_counter() - t0)
    return maps, result, trained


def ece(prob: np.ndarray, truth: np.ndarray) -> float:
    """Expected calibration error of the map's probabilities on the test pixels (15 bins)."""
    try:
        from glacier_mapper_plugin.core.segmentation.calibration import expected_calibration_error
    except ImportError:  # commits before calibration
        return float("nan")
    return expected_calibration_error(prob.ravel().astype(np.float64), truth.ravel().astype(np.float64))


def glacier_areas(raster: Path, inventory, masks: list[np.ndarray]):
    """Per test glacier (pixels of its outline on the test grid, >= 20): its true area in
    pixels and each member's, counted inside the outline buffered by 2 pixels (60 m) minus
    the other outlines: the area change's reading of a map."""
    from scipy import ndimage
    from glacier_mapper_plugin.core.labels import rasterize_ids
    with rasterio.open(raster) as src:
        ids = rasterize_ids(inventory, src.crs, src.transform, (src.height, src.width))
    rows = []
    for g in np.unique(ids[ids > 0]):
        own = ids == g
        if own.sum() < 20:
            continue
        zone = ndimage.binary_dilation(own, iterations=2) & ((ids == 0) | own)
        rows.append((int(own.sum()), [int((m & zone).sum()) for m in masks]))
    return rows


def error_map(path: Path, stack: np.ndarray, truth: np.ndarray, prob: np.ndarray, threshold: float, title: str):
    """Where the map is wrong, beside the scene and the probability: what to fix next."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rgb = stack[:3].transpose(1, 2, 0).astype(np.float32)
    pred = prob >= threshold
    err = np.zeros(truth.shape + (3,), np.float32)
    err[pred & truth], err[pred & ~truth], err[~pred & truth] = (1, 1, 1), (0.9, 0.1, 0.1), (0.1, 0.6, 1)
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.6))
    for a, (image, name) in zip(ax, [(np.clip(rgb / np.percentile(rgb, 99), 0, 1), "test part (RGB)"),
                                     (err, "white: hit, red: false glacier, blue: missed glacier"),
                                     (prob, f"probability ({title})")]):
        a.imshow(image, vmin=0, vmax=1, interpolation="nearest")
        a.set_title(name, fontsize=9)
        a.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def _option(text: str):
    """KEY=VALUE -> (key, value as a number when it reads as one; features, weighting as lists)."""
    key, _, value = text.partition("=")
    if key == "features":
        from glacier_mapper_plugin.core.segmentation.features import parse
        return key, tuple(parse(value))
    if key == "weighting":
        from glacier_mapper_plugin.core.segmentation.weighting import parse
        return key, parse(value)
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short training (under 10 minutes on 2 cores)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=None, help="default: 30, or 6 with --quick")
    ap.add_argument("--patch-size", type=int, default=64)
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--code", type=Path, default=None,
                    help="a checkout of another commit whose training and segmentation to measure "
                         "(git worktree add /tmp/old REV): bisecting a regression")
    ap.add_argument("--only-unet", action="store_true", help="skip the baselines (bisecting)")
    ap.add_argument("--tta", nargs="+", default=["none"], choices=["none", "flips", "d4"],
                    help="test-time augmentations to segment the test part with (each scored; the first "
                         "makes the ensemble's area bounds)")
    ap.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16", "int8"],
                    help="precisions to segment the test part with (bf16: on a CPU with AVX512-BF16 or AMX; "
                         "int8: the quantised graph on onnxruntime or OpenVINO, BACKEND auto; its IoU change "
                         "beside the first)")
    ap.add_argument("--train", nargs="*", default=[], metavar="OPTION=VALUE",
                    help="training options to change (TrainOptions fields, e.g. loss=bce schedule=constant): "
                         "an ablation")
    ap.add_argument("--error-map", type=Path, default=None, metavar="PNG",
                    help="write where the first seed's map is wrong (test RGB; hits, false glacier, missed "
                         "glacier; probability) as a PNG")
    args = ap.parse_args(argv)
    if args.code:
        sys.path.insert(0, str(args.code.resolve()))
        for name in [m for m in sys.modules if m.startswith("glacier_mapper_plugin")]:
            del sys.modules[name]
    if not DATA.is_dir():
        print(f"{DATA} is absent: the benchmark needs ../shared/data/everest_west", file=sys.stderr)
        return 2
    epochs = args.epochs or (6 if args.quick else 30)
    variants = {(tta if p == args.precision[0] else f"{tta}, {p}"): dict(tta=tta, precision=p, backend="auto")
                for tta in args.tta for p in args.precision}
    extra = dict(_option(o) for o in args.train)
    import torch
    torch.set_num_threads(os.cpu_count())
    from glacier_mapper_plugin.core.labels import Inventory
    from glacier_mapper_plugin.core.vector import read_layer
    if args.code:
        print(f"code under test: {args.code} (glacier_mapper_plugin from {sys.modules['glacier_mapper_plugin'].__file__})")
    inventory = Inventory.from_layer(read_layer(DATA / "rgi60_everest_west.gpkg"), "RGIId")
    with tempfile.TemporaryDirectory(prefix="bench_accuracy-") as tmp:
        work = Path(tmp)
        train = crop(DATA / "everest_west.tif", TRAIN_ROWS, work / "train.tif")
        test = crop(DATA / "everest_west.tif", TEST_ROWS, work / "test.tif")
        with rasterio.open(train) as a, rasterio.open(test) as b:
            train_stack, test_stack = a.read(), b.read()
        train_truth, test_truth = truth_on(train, inventory), truth_on(test, inventory)
        glacier_b = brightness(test_stack)[test_truth]
        dark = test_truth & (brightness(test_stack) <= np.percentile(glacier_b, 100 / 3))
        print(f"everest_west: train rows {TRAIN_ROWS[0]}-{TRAIN_ROWS[1] - 1} ({train_truth.mean():.0%} glacier), "
              f"gap {TRAIN_ROWS[1]}-{TEST_ROWS[0] - 1}, test rows {TEST_ROWS[0]}-{TEST_ROWS[1] - 1} "
              f"({test_truth.mean():.0%} glacier); U-Net {args.encoder}, {epochs} epochs, patches {args.patch_size} px, "
              f"CPU ({os.cpu_count()} cores), seeds {args.seeds}" + (f", {extra}" if extra else ""), flush=True)
        rows = []
        level_pred, level = threshold_baseline(train_stack, train_truth, test_stack)
        rows.append((f"brightness >= {level} (chosen on train)", None, scores(level_pred, test_truth, dark), 0.0, 0.0))
        for seed in [] if args.only_unet else args.seeds:
            t0 = time.perf_counter()
            rows.append(("random forest (xgboost)", seed, scores(forest_baseline(train_stack, train_truth, test_stack, seed),
                                                                 test_truth, dark), time.perf_counter() - t0, 0.0))
        members = []
        for seed in args.seeds:
            maps, result, seconds = unet(train, test, inventory, work, seed, epochs, args.patch_size, args.encoder,
                                         extra, variants)
            for label, (prob, predict_s) in maps.items():
                pred = prob >= result.header.threshold
                name = f"U-Net (best epoch {result.best_epoch})" + ("" if label == "none" else f", TTA {label}")
                rows.append((name, seed, dict(scores(pred, test_truth, dark), ece=ece(prob, test_truth)),
                             seconds, predict_s))
                first = maps[next(iter(maps))][0] >= result.header.threshold
                print(f"  seed {seed}, TTA {label}: IoU {rows[-1][2]['iou']:.3f} (training {seconds:.0f} s, "
                      f"segmenting {predict_s:.1f} s; {np.mean(pred == first):.2%} of pixels as the first)", flush=True)
            calibration = (result.header.metrics or {}).get("calibration") or {}
            print(f"  seed {seed}: temperature {calibration.get('temperature')}, validation ECE "
                  f"{calibration.get('ece_before')} -> {calibration.get('ece')}; baseline "
                  f"{(result.header.metrics or {}).get('baseline')}", flush=True)
            members.append(maps[next(iter(maps))][0] >= result.header.threshold)
            if args.error_map and len(members) == 1:
                prob = maps[next(iter(maps))][0]
                iou = scores(prob >= result.header.threshold, test_truth, dark)["iou"]
                error_map(args.error_map, test_stack, test_truth, prob, result.header.threshold,
                          f"seed {seed}, IoU {iou:.3f}")
        if len(members) > 1 and "ensemble" in inspect.signature(_core("segment").segment).parameters:
            # The seeds' models as one ensemble through segment_glaciers' ENSEMBLE: its mean scored
            # as one map (the first variant's settings; each member's own temperature).
            segmenting = _core("segment")
            models = [work / f"unet_seed{seed}.gmm" for seed in args.seeds]
            variant = next(iter(variants.values()))
            t0 = time.perf_counter()
            segmenting.segment(test, models[0], work / "ensemble.tif", options=segmenting.SegmentOptions(
                tile_size=256, overlap=64, device="cpu", **variant), ensemble=models[1:])
            with rasterio.open(work / "ensemble.tif") as src:
                prob = np.nan_to_num(src.read(1))
            threshold = segmenting.read_header(models[0]).threshold
            rows.append((f"Ensemble of the {len(models)} seeds' U-Nets (ENSEMBLE: their mean)", "all",
                         dict(scores(prob >= threshold, test_truth, dark), ece=ece(prob, test_truth)), 0.0,
                         time.perf_counter() - t0))
            print(f"  ensemble of {len(models)} seeds: IoU {rows[-1][2]['iou']:.3f}", flush=True)
        if len(members) > 1:
            areas = glacier_areas(test, inventory, members)
            inside = [min(m) <= true <= max(m) for true, m in areas]
            print(f"\nensemble of the {len(members)} seeds as members: the true area of {np.mean(inside):.0%} of the "
                  f"{len(areas)} test glaciers (>= 20 pixels) lies within the members' range (min-max)")
    keys = ("iou", "precision", "recall", "f1", "dark_recall", "ece")
    print("\n| method | seed | IoU | precision | recall | F1 | recall, darkest third | ECE | training s | segmenting s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, seed, s, seconds, predict_s in rows:
        print(f"| {name} | {seed if seed is not None else '-'} | " + " | ".join(f"{s.get(k, float('nan')):.3f}" for k in keys)
              + f" | {seconds:.0f} | {predict_s:.1f} |")
    kinds = ["random forest"] + [f"U-Net ({label})" for label in variants]
    for kind in kinds:
        if kind.startswith("U-Net"):
            label = kind[7:-1]
            group = [s for name, _, s, _, _ in rows if name.startswith("U-Net")
                     and (name.endswith(f"TTA {label}") if label != "none" else "TTA" not in name)]
        else:
            group = [s for name, _, s, _, _ in rows if name.startswith(kind)]
        if not group:
            continue
        print(f"| **{kind}, mean (spread)** | {len(group)} seeds | " + " | ".join(
            f"{np.mean([g.get(k, np.nan) for g in group]):.3f} ({np.ptp([g.get(k, np.nan) for g in group]):.3f})"
            for k in keys) + " | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
