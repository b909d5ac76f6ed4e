"""Segmentation steps: training, cross-validation, inference and evaluation."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ...core.progress import Progress
from .common import inventory, paths, pool_of, read_source, require, step, write_joined, write_table


def training_inputs(p, progress=None):
    from ...core.imagery.bands import canonical, parse_mapping
    from ...core.segmentation.features import parse as parse_features
    from ...core.segmentation.train import TrainOptions, check_training_rasters
    from ...core.segmentation.weighting import parse as parse_weighting
    require(p, "INPUT")
    inv, layer = inventory(p, progress=progress)
    text = str(p.get("BANDS") or "").strip()
    mapping = parse_mapping(text) if "=" in text else None
    bands = list(mapping) if mapping else ([canonical(b) for b in text.split(",") if b.strip()] or None)
    options = TrainOptions(
        patch_size=int(p.get("PATCH_SIZE", 256)), encoder=str(p.get("ENCODER") or "resnet34"),
        epochs=int(p.get("EPOCHS", 30)), batch_size=int(p.get("BATCH_SIZE", 8)),
        learning_rate=float(p.get("LEARNING_RATE", 1e-3)), device=str(p.get("DEVICE") or "auto"),
        seed=int(p.get("SEED", 42)), val_fraction=float(p.get("VAL_FRACTION", 0.2)),
        quality=str(p.get("QUALITY") or "none"), bands=bands, mapping=mapping,
        encoder_weights=str(p.get("ENCODER_WEIGHTS") or "none"),
        patch_cache=p.get("PATCH_CACHE") or None, keep_patches=bool(p.get("KEEP_PATCHES", False)),
        patience=int(p.get("PATIENCE", 10)), loss=str(p.get("LOSS") or "bce+dice"),
        schedule=str(p.get("SCHEDULE") or "cosine"), features=tuple(parse_features(p.get("FEATURES"))),
        weighting=parse_weighting(p.get("WEIGHTING")))
    rasters = paths(p, "INPUT")
    check_training_rasters(rasters, options.patch_size)
    return rasters, inv, layer, (p.get("DEM") or None), options


def on_device(run):
    """Steps that run the network: operators an Apple GPU lacks are named in the log."""
    import functools

    @functools.wraps(run)
    def wrapped(p, progress):
        from ...core.segmentation.segment import named_fallbacks
        with named_fallbacks(progress):
            return run(p, progress)
    return wrapped


@step("train_model")
@on_device
def train_model(p, progress: Progress):
    from ...core.segmentation.train import train_ensemble, train_model as train
    rasters, inv, _, dem, options = training_inputs(p, progress)
    require(p, "OUTPUT_MODEL")
    if not Path(p["OUTPUT_MODEL"]).suffix:  # "model" -> "model.gmm": the file says what it is
        p["OUTPUT_MODEL"] = str(p["OUTPUT_MODEL"]) + ".gmm"
    members = int(p.get("MEMBERS") or 1)
    if members == 1 and not p.get("DASK_SCHEDULER"):
        result = train(rasters, inv, p["OUTPUT_MODEL"], dem, options, progress)
        out = {"OUTPUT_MODEL": p["OUTPUT_MODEL"], "BEST_EPOCH": result.best_epoch,
               "VAL_IOU": result.header.metrics.get("val_iou_per_glacier"), "MODELS": [p["OUTPUT_MODEL"]]}
    else:
        with pool_of(p, progress) as pool:
            trained = train_ensemble(rasters, inv, p["OUTPUT_MODEL"], dem, options, members, progress, pool)
        out = {"OUTPUT_MODEL": p["OUTPUT_MODEL"], "BEST_EPOCH": trained[0]["best_epoch"],
               "VAL_IOU": trained[0]["val_iou"], "MODELS": [t["model"] for t in trained]}
    return dict(out, **training_record(p, out["MODELS"]))


def training_record(p, models) -> dict:
    """OUTPUT_CURVE and OUTPUT_REPORT, read back from the model files written."""
    from ...core.segmentation.model_file import read_header
    from ...core.segmentation.report import CURVE_TYPES, curve_rows, write_training_report
    if not (p.get("OUTPUT_CURVE") or p.get("OUTPUT_REPORT")):
        return {}
    headers = [(m, read_header(m)) for m in models]
    out = {}
    if p.get("OUTPUT_CURVE"):
        out["OUTPUT_CURVE"] = write_table(p["OUTPUT_CURVE"], curve_rows(headers), CURVE_TYPES, "training_curve")
    if p.get("OUTPUT_REPORT"):
        out["OUTPUT_REPORT"] = str(write_training_report(p["OUTPUT_REPORT"], headers))
    return out


CV_TYPES = {"subregion": str, "patches": int, "glaciers": int, "accuracy": float, "iou": float,
            "precision": float, "recall": float, "f1": float}


@step("cross_validate")
@on_device
def cross_validate(p, progress: Progress):
    from ...core.segmentation.crossval import cross_validate as crossval
    rasters, inv, layer, dem, options = training_inputs(p, progress)
    require(p, "OUTPUT_FOLDER")
    with pool_of(p, progress) as pool:
        cv = crossval(rasters, inv, p["OUTPUT_FOLDER"], dem, int(p.get("FOLDS", 5)), options, progress,
                      members=int(p.get("MEMBERS") or 1), pool=pool)
    rows = cv.table()
    for r in rows:
        progress.info(f"{r['subregion']:>8}: IoU {r['iou']:.4f}  F1 {r['f1']:.4f}  "
                      f"precision {r['precision']:.4f}  recall {r['recall']:.4f}")
    out = {"OUTPUT_FOLDER": p["OUTPUT_FOLDER"], "PREDICTIONS": [str(x) for x in cv.predictions]}
    if p.get("OUTPUT_TABLE"):
        out["OUTPUT_TABLE"] = write_table(p["OUTPUT_TABLE"], rows, CV_TYPES, "crossval")
    if p.get("OUTPUT_INVENTORY"):
        out["OUTPUT_INVENTORY"] = write_joined(p["OUTPUT_INVENTORY"], layer,
                                               [{"fold": f + 1} for f in cv.folds], {"fold": int})
    return out


def _say_if_implausible(model, probability, options, outlines, progress) -> None:
    """The model's own warnings (from its training) and a map whose glacier share cannot be right."""
    from ...core.segmentation.model_file import read_header
    from ...core.segmentation.plausibility import map_check, share_warning
    header = read_header(model)
    for warning in header.metrics.get("warnings", []):
        progress.warning(f"MODEL: {warning}")
    check = map_check(probability, header.threshold if options.threshold is None else options.threshold,
                      outlines)
    warning = share_warning(check["predicted"], check["reference"], "the glacier map")
    if warning:
        progress.warning(warning)


@step("segment_glaciers")
@on_device
def segment_glaciers(p, progress: Progress):
    from ...core.imagery.bands import parse_mapping
    from ...core.segmentation.segment import SegmentOptions, segment, segment_blocks
    require(p, "INPUT", "MODEL")
    if not (p.get("OUTPUT_PROBABILITY") or p.get("OUTPUT_MASK")):
        raise ValueError("OUTPUT_PROBABILITY and OUTPUT_MASK are both skipped: give at least one of them "
                         "(the polygons are made from the mask)")
    mask_geoms = []
    if p.get("MASK_LAYER"):
        import rasterio
        from ...core.labels import Inventory
        lyr = read_source(p, "MASK_LAYER")
        with rasterio.open(p["INPUT"]) as src:
            crs, bounds = src.crs.to_wkt(), src.bounds
        geoms = [g for g in lyr.geometries or [] if g is not None and not g.is_empty]
        if not geoms:
            raise ValueError("MASK_LAYER has no outline: give the inventory of the region, or no MASK_LAYER")
        mask_geoms = Inventory(list(range(len(geoms))), geoms, lyr.crs).to_crs(crs).geometries
        from shapely.geometry import box
        reach = box(*bounds).buffer(float(p.get("MASK_BUFFER", 500.0)))
        if not any(g.intersects(reach) for g in mask_geoms):
            raise ValueError(f"MASK_LAYER: none of its {len(geoms)} outlines lies within MASK_BUFFER "
                             f"({float(p.get('MASK_BUFFER', 500.0)):g} m) of INPUT, so every pixel would be "
                             "no data: give the outlines of the region INPUT shows, or no MASK_LAYER")
    threshold = p.get("THRESHOLD")
    options = SegmentOptions(
        tile_size=int(p.get("TILE_SIZE", 512)), overlap=int(p.get("OVERLAP", 64)),
        batch_size=int(p.get("BATCH_SIZE", 4)),
        threshold=None if threshold in (None, "") else float(threshold),
        device=str(p.get("DEVICE") or "auto"), precision=str(p.get("PRECISION") or "auto"),
        probability_dtype=str(p.get("PROBABILITY_FORMAT") or "float32"),
        bands=parse_mapping(p.get("BANDS")) or None, mask_geometries=mask_geoms,
        mask_buffer_m=float(p.get("MASK_BUFFER", 500.0)), min_area_km2=float(p.get("MIN_AREA", 0.01)),
        simplify_m=float(p.get("SIMPLIFY", 0.0)), tta=str(p.get("TTA") or "none"),
        backend=str(p.get("BACKEND") or "auto"))
    prob, mask, poly = p.get("OUTPUT_PROBABILITY") or None, p.get("OUTPUT_MASK") or None, p.get("OUTPUT_POLYGONS") or None
    if poly and not str(poly).lower().endswith(".gpkg"):
        raise ValueError(f"OUTPUT_POLYGONS must be a GeoPackage (.gpkg), not {poly}")
    if poly and not mask:
        raise ValueError("OUTPUT_POLYGONS is made from the mask: set OUTPUT_MASK too")
    from ...core.segmentation.ensemble import member_models, member_outputs
    from ...core.segmentation.model_file import ModelFileError
    ensemble = paths(p, "ENSEMBLE")
    models = member_models(p["MODEL"], ensemble)
    if len(models) < len(ensemble) + 1:
        progress.info(f"ENSEMBLE: {len(ensemble) + 1 - len(models)} file(s) named twice or MODEL itself, "
                      "counted once")
    members = []
    if p.get("OUTPUT_MEMBERS"):
        if len(models) == 1:
            raise ValueError("OUTPUT_MEMBERS writes each ensemble member's probability: give the other members "
                             "in ENSEMBLE (train_model's MODELS output lists them), or leave OUTPUT_MEMBERS out")
        members = member_outputs(p["OUTPUT_MEMBERS"], models)
        from ..outputs import same_file
        for name in ("INPUT", "DEM"):
            hit = next((m for m in members if p.get(name) and same_file(m.resolve(), Path(p[name]).resolve())), None)
            if hit:
                raise ValueError(f"OUTPUT_MEMBERS: {hit.name} would replace {name}: an output never replaces an "
                                 "input; choose another folder")
    # The probability is where the tiles are blended: without OUTPUT_PROBABILITY it is made
    # in a hidden folder beside the mask (same disk) and removed with it.
    if not prob:  # the mask's folder may be new (the runner removes it again if the run fails)
        os.makedirs(os.path.dirname(os.path.abspath(mask)), exist_ok=True)
    scratch = None if prob else tempfile.mkdtemp(prefix=".probability-", dir=os.path.dirname(os.path.abspath(mask)))
    written = prob or os.path.join(scratch, "probability.tif")
    try:
        if p.get("DASK_SCHEDULER"):
            with pool_of(p, progress) as pool:
                result = segment_blocks(p["INPUT"], p["MODEL"], written, mask, poly, p.get("DEM") or None,
                                        options, progress, pool, models[1:], members)
        else:
            result = segment(p["INPUT"], p["MODEL"], written, mask, poly, p.get("DEM") or None, options, progress,
                             models[1:], members)
        _say_if_implausible(p["MODEL"], written, options, mask_geoms, progress)
    except ModelFileError as err:
        raise ValueError(f"MODEL: {err}") from None
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return {"OUTPUT_PROBABILITY": prob, "OUTPUT_MASK": mask, "OUTPUT_POLYGONS": poly,
            "OUTPUT_MEMBERS": p.get("OUTPUT_MEMBERS") or None, "MEMBER_PROBABILITIES": [str(m) for m in members],
            "MEMBERS_USED": len(models), "GLACIER_AREA_KM2": result.glacier_area_km2, "DEVICE_USED": result.device,
            "PRECISION_USED": result.precision, "BACKEND_USED": result.backend}


@step("evaluate_segmentation")
def evaluate_segmentation(p, progress: Progress):
    from ...core.segmentation.evaluate import evaluate
    require(p, "PREDICTION")
    inv, layer = inventory(p, progress=progress)
    with pool_of(p, progress) as pool:
        ev = evaluate(p["PREDICTION"], inv, p.get("QUALITY") or None, threshold=float(p.get("THRESHOLD", 0.5)),
                      progress=progress, pool=pool)
    rows = [dict(r, id=str(r["id"])) for r in ev.glaciers]
    o = ev.overall
    progress.info(f"pixels: IoU {o['iou']:.4f}, F1 {o['f1']:.4f}, precision {o['precision']:.4f}, "
                  f"recall {o['recall']:.4f}, accuracy {o['accuracy']:.4f}")
    out = {"ACCURACY": o["accuracy"], "IOU": o["iou"], "PRECISION": o["precision"],
           "RECALL": o["recall"], "F1": o["f1"]}
    if p.get("OUTPUT_TABLE"):
        out["OUTPUT_TABLE"] = write_table(p["OUTPUT_TABLE"], rows, name="evaluation")
    if p.get("OUTPUT"):
        out["OUTPUT"] = write_joined(p["OUTPUT"], layer, [{k: v for k, v in r.items() if k != "id"}
                                                          for r in ev.glaciers])
    return out
