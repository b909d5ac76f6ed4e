"""Imagery steps: the synthetic region and per-glacier acquisition."""
from __future__ import annotations

import datetime as dt

from ...core.progress import Progress
from .common import inventory, join_columns, pool_of, require, step, write_table


@step("synthetic_region")
def synthetic_region(p, progress: Progress):
    from ...core.imagery.synthetic import make_region
    require(p, "OUTPUT_FOLDER")
    region = make_region(p["OUTPUT_FOLDER"], seed=int(p.get("SEED", 42)), size_km=float(p.get("SIZE_KM", 4.0)),
                         n_glaciers=int(p.get("N_GLACIERS", 8)), start_year=int(p.get("START_YEAR", 2015)),
                         end_year=int(p.get("END_YEAR", 2023)), progress=progress)
    return {"OUTPUT_FOLDER": str(region.folder), "IMAGERY_START": str(region.imagery_start),
            "IMAGERY_END": str(region.imagery_end), "DEM": str(region.dem),
            "INVENTORY": f"{region.inventory}|layername=inventory", "TRUTH_START": str(region.truth_start),
            "TRUTH_END": str(region.truth_end), "GLACIER_COUNT": region.n_glaciers,
            "TRUE_REGIONAL_RATE": region.true_regional_rate_pct_yr,
            "START_DATE": str(region.start_date), "END_DATE": str(region.end_date)}


ACQUISITION_TYPES = {"glacier_id": str, "status": str, "collection": str, "scene_id": str, "date": str,
                     "cloud_pct": float, "masked_pct": float, "snow_pct": float, "cloud_only_snow_pct": float,
                     "candidates": int, "offset_in_dn": str, "offset_decided_by": str, "offset_metadata": str,
                     "offset_pixels": str, "dark_dn": float, "file": str, "detail": str}


@step("acquire_imagery")
def acquire_imagery(p, progress: Progress):
    from ...core.imagery.acquire import AcquireOptions, acquire
    inv, layer = inventory(p, progress=progress)
    text = str(p.get("DATE") or "").strip()
    try:
        date = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"DATE must be YYYY-MM-DD, not {text!r}") from None
    selection = str(p.get("SELECTION") or "cloud")  # QGIS and the CLI both pass the option's name
    options = AcquireOptions(date=date, window_days=int(p.get("WINDOW_DAYS", 15)),
                             max_candidates=int(p.get("MAX_CANDIDATES", 5)),
                             stac_url=str(p.get("STAC_URL") or "").strip() or AcquireOptions.stac_url,
                             collection=str(p.get("COLLECTION") or "").strip() or AcquireOptions.collection,
                             buffer_m=float(p.get("BUFFER_M", 1280.0)),
                             dem=str(p.get("DEM") or "").strip() or None,
                             max_workers=int(p.get("MAX_WORKERS", 4)), selection=selection)
    require(p, "OUTPUT_FOLDER")
    folder = p["OUTPUT_FOLDER"]
    glaciers = list(zip(inv.ids, inv.geometries, [inv.crs] * len(inv.ids)))  # every glacier gets a row
    with pool_of(p, progress, options.max_workers) as pool:
        results = acquire(glaciers, options, folder, progress, pool=pool)
    rows = [dict({name: (str(r.id) if name == "glacier_id" else getattr(r, name)) for name in ACQUISITION_TYPES}, **join)
            for r, join in zip(results, join_columns(layer, layer.id_field, inv.ids))]
    out = {"OUTPUT_FOLDER": folder, "FILES": [r.file for r in results if r.file]}
    if p.get("OUTPUT"):
        out["OUTPUT"] = write_table(p["OUTPUT"], rows, ACQUISITION_TYPES, "acquisition")
    n_ok = sum(r.status in ("ok", "exists") for r in results)
    progress.info(f"{n_ok} of {len(results)} glaciers have imagery in {folder}")
    for r in results:
        if r.status not in ("ok", "exists"):
            progress.warning(f"{r.id}: {r.status}: {r.detail}")
    out["N_OK"] = n_ok
    return out
