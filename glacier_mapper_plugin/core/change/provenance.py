"""What an area change was measured from, for its report: a number a glaciologist cannot trace
to its inventory, imagery, model and software cannot be cited or reproduced."""
from __future__ import annotations

import platform
from pathlib import Path

PLUGIN_METADATA = Path(__file__).resolve().parents[2] / "metadata.txt"


def plugin_version() -> str:
    try:
        for line in PLUGIN_METADATA.read_text(encoding="utf-8").splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def software_versions() -> list[dict]:
    import numpy
    import rasterio
    import shapely
    rows = [dict(software="Glacier Mapper", version=plugin_version()),
            dict(software="Python", version=platform.python_version()),
            dict(software="numpy", version=numpy.__version__),
            dict(software="rasterio", version=rasterio.__version__),
            dict(software="GDAL", version=rasterio.__gdal_version__),
            dict(software="shapely", version=shapely.__version__)]
    try:
        import pyproj
        rows.append(dict(software="PROJ", version=pyproj.proj_version_str))
    except ImportError:
        pass
    return rows


def tagged(rasters) -> list[tuple[str, dict]]:
    """(path, tags) of each prediction raster, read once for the report's tables."""
    import rasterio
    out = []
    for r in rasters:
        with rasterio.open(r) as src:
            out.append((str(r), src.tags()))
    return out


def prediction_rows(rasters: list[tuple[str, dict]], label: str, limit: int = 50) -> list[dict]:
    """One row per prediction raster (`tagged`): its date and what segment_glaciers tagged it
    with (the imagery it was made from, the model and threshold)."""
    rows = []
    for r, tags in rasters[:limit]:
        rows.append(dict(input=label, file=Path(r).name,
                         date=tags.get("DATE") or tags.get("DATETIME", "")[:10] or "not tagged",
                         imagery=tags.get("SOURCE", ""), model=tags.get("MODEL", ""),
                         threshold=tags.get("THRESHOLD", "")))
    if len(rasters) > limit:
        rows.append(dict(input=label, file=f"... and {len(rasters) - limit} more"))
    return rows


TRAINING_KEYS = ("epochs", "glaciers_train", "glaciers_val", "patches_train", "encoder_weights", "seed",
                 "device", "seconds")


def model_rows(rasters: list[tuple[str, dict]]) -> list[dict]:
    """The models the predictions (`tagged`) name (MODEL_PATH tag), with their training summary."""
    from ..segmentation.model_file import read_header
    paths = []
    for _, tags in rasters:
        for path in [tags.get("MODEL_PATH")] + str(tags.get("MEMBER_PATHS") or "").split("|"):
            if path and path not in paths:  # an ensemble mean names every member
                paths.append(path)
    rows = []
    for path in paths:
        try:
            header = read_header(path)
        except Exception as error:  # noqa: BLE001 (a moved or rewritten model is told, not fatal)
            rows.append(dict(model=Path(path).name, summary=f"not readable now: {error}"))
            continue
        t, m = header.training, header.metrics
        training = ", ".join(f"{k.replace('_', ' ')} {t[k]}" for k in TRAINING_KEYS if t.get(k) is not None)
        if t.get("rasters"):
            training += f"; imagery {', '.join(map(str, t['rasters'][:5]))}" + (" ..." if len(t["rasters"]) > 5 else "")
        validation = m.get("validation") or {}
        said = []
        if m.get("best_epoch") is not None:
            said.append(f"best epoch {m['best_epoch']}")
        if isinstance(m.get("val_iou_per_glacier"), float):
            said.append(f"validation IoU per glacier {m['val_iou_per_glacier']:.3f}")
        said += [f"validation {k} {validation[k]:.3f}" for k in ("iou", "precision", "recall")
                 if isinstance(validation.get(k), float)]
        if isinstance((m.get("calibration") or {}).get("ece"), float):
            said.append(f"calibrated (temperature {m['calibration']['temperature']:.2f}, validation ECE "
                        f"{m['calibration']['ece']:.3f})")
        metrics = ", ".join(said) or "none recorded (an untrained model?)"
        rows.append(dict(model=Path(path).name, encoder=header.encoder,
                         bands=" ".join(header.bands + list(header.features)),
                         training=training, metrics=metrics, path=path))
    return rows
