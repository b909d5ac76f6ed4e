"""A prediction (probability or mask) against an inventory: pixel metrics overall and, per
glacier, the numbers area change needs: inventory area, predicted area inside the outline,
recall, masked fraction, and false positives in rings just outside the outline.
"""
from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window
from rasterio.transform import array_bounds
from scipy import ndimage

from ..geodesy import ellipsoidal_area_km2
from ..imagery.quality import masked_from_quality, quality_band
from ..labels import Inventory, rasterize_ids, require_overlap
from .metrics import add, confusion, scores
from ..progress import Progress

RINGS_M = ((0, 10), (10, 20), (20, 50))


@dataclass
class Evaluation:
    overall: dict           # accuracy, iou, precision, recall, f1 + confusion counts
    glaciers: list[dict]    # one record per inventory glacier


PROBABILITY_TOLERANCE = 1e-3


def prediction_kind(src, values, valid, parameter="PREDICTION") -> str:
    """'probability' (0-1 float), 'percent' (0-100 integers, as segment_glaciers writes with
    PROBABILITY_FORMAT=uint8) or 'mask' (0/1). Percent and mask are told apart by the
    metadata, not by the largest value (a percent raster whose glaciers all stay below 2 %
    would look like a mask). Anything else (a DEM, a scene, DNs) is refused."""
    if src.count != 1:
        raise ValueError(f"{parameter} has {src.count} bands: a prediction has one (the probability or "
                         "mask that segment_glaciers or cross_validate wrote), not a scene")
    v = values[valid]
    if v.size == 0:
        raise ValueError(f"{parameter} has no valid pixel: it is all no data")
    return kind_of_range(src, float(v.min()), float(v.max()), parameter)


def kind_of_range(src, lo: float, hi: float, parameter="PREDICTION") -> str:
    """prediction_kind from the range of the valid values (all of them, however read)."""
    description = (src.descriptions[0] or "").lower()
    if np.issubdtype(np.dtype(src.dtypes[0]), np.floating):
        if lo < -PROBABILITY_TOLERANCE or hi > 1 + PROBABILITY_TOLERANCE:
            raise ValueError(f"{parameter}: values from {lo:g} to {hi:g} are not a probability (0-1) or a "
                             "0/1 mask: is it a DEM or a scene? Give the probability raster that "
                             "segment_glaciers wrote")
        return "probability"
    if "(%)" in description or "percent" in description:
        if hi > 100:
            raise ValueError(f"{parameter} says it holds percent but has values up to {hi:g}")
        return "percent"
    if "mask" in description or hi <= 1:
        if lo < 0 or hi > 1:
            raise ValueError(f"{parameter} is described as a mask but has values {lo:g} to {hi:g}")
        return "mask"
    if src.dtypes[0] == "uint8" and hi <= 100:
        return "percent"  # an unlabelled 0-100 raster: the only integer probability we write
    raise ValueError(f"{parameter}: integer values from {lo:g} to {hi:g} are neither a 0/1 mask nor a "
                     "0-100 % probability: is it a DEM or a scene? Give the probability or mask that "
                     "segment_glaciers wrote")


def read_prediction(src, threshold: float = 0.5, parameter="PREDICTION", kind=None, window=None,
                    out_shape=None):
    """(glacier bool, no-data bool) from a probability (0-1 float or 0-100 uint8) or mask;
    `kind` (decided beforehand over the whole raster) lets a window be read alone;
    `out_shape` reads it decimated (nearest)."""
    band = src.read(1, masked=True, window=window, out_shape=out_shape)
    nodata = np.ma.getmaskarray(band)
    values = band.filled(0)
    if np.issubdtype(values.dtype, np.floating):
        nodata |= ~np.isfinite(values)
    kind = kind or prediction_kind(src, values, ~nodata, parameter)
    if kind == "probability":
        glacier = np.nan_to_num(values) >= threshold
    elif kind == "mask":
        glacier = values == 1
    else:
        glacier = values >= threshold * 100
    return glacier & ~nodata, nodata


BLOCK_ROWS = 1024  # rows per piece: the distance transform of a 10980 px wide block is ~0.3 GB


def kind_from_blocks(src, parameter="PREDICTION") -> str:
    """The kind of the prediction from the range of all its valid values, read block by block."""
    if src.count != 1:
        prediction_kind(src, np.zeros(1), np.ones(1, bool), parameter)  # the error that names the bands
    lo, hi = np.inf, -np.inf
    for _, win in src.block_windows(1):
        band = src.read(1, masked=True, window=win)
        values = band.compressed()
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size:
            lo, hi = min(lo, float(values.min())), max(hi, float(values.max()))
    if lo > hi:
        raise ValueError(f"{parameter} has no valid pixel: it is all no data")
    return kind_of_range(src, lo, hi, parameter)


def evaluate_rows(inventory: Inventory, prediction, quality_raster, quality, kind, threshold, rows, *,
                  progress: Progress) -> dict:
    """The sums of one block of rows (a piece of a pool): its confusion, per glacier the
    pixel counts of its rows, and per glacier the ring pixels of its rows. The block is read
    with RINGS' reach above and below: a pixel within R of an outline has its nearest outline
    pixel within R, so the distances of its own rows are exact."""
    progress.check()
    r0, r1 = rows
    with rasterio.open(prediction) as src:
        pixel = abs(src.transform.a)
        reach = int(np.ceil(max(hi for _, hi in RINGS_M) / pixel)) + 1
        a, b = max(r0 - reach, 0), min(r1 + reach, src.height)
        win = Window(0, a, src.width, b - a)
        glacier, masked = read_prediction(src, threshold, kind=kind, window=win)
        transform, crs = rasterio.windows.transform(win, src.transform), src.crs
    if quality_raster:
        with rasterio.open(quality_raster) as q:
            masked |= masked_from_quality(q.read(quality_band(q, quality), window=win))
    ids = rasterize_ids(inventory, crs, transform, glacier.shape)
    own = slice(r0 - a, r1 - a)
    o_ids, o_glacier, o_masked = ids[own], glacier[own], masked[own]
    truth, valid = o_ids > 0, ~o_masked
    out = {"confusion": confusion(o_glacier, truth, valid)}
    keys, where = np.unique(o_ids[truth], return_inverse=True)  # the glaciers of these rows
    count = lambda sel: np.bincount(where[sel[truth]], minlength=len(keys))  # noqa: E731
    out["glaciers"] = (keys, np.stack([count(truth), count(o_masked), count(o_glacier & valid),
                                       count(valid), count(o_glacier)]))
    if (ids > 0).any():
        dist, (ri, ci) = ndimage.distance_transform_edt(ids == 0, sampling=pixel, return_indices=True)
        nearest = ids[ri[own], ci[own]]
        outside = ~truth & valid
        d = dist[own]
        del dist, ri, ci
        rings = [outside & (d > lo) & (d <= hi) for lo, hi in RINGS_M]
        any_ring = np.logical_or.reduce(rings)
        rkeys, rwhere = np.unique(nearest[any_ring], return_inverse=True)
        n = [np.bincount(rwhere[r[any_ring]], minlength=len(rkeys)) for r in rings]
        fp = [np.bincount(rwhere[(r & o_glacier)[any_ring]], minlength=len(rkeys)) for r in rings]
        out["rings"] = (rkeys, np.stack(n), np.stack(fp))
    return out


def evaluate(prediction, inventory: Inventory, quality_raster=None, quality="auto",
             threshold: float = 0.5, progress: Progress | None = None, pool=None) -> Evaluation:
    """Compare a prediction raster with the inventory outlines (any CRS), in blocks of rows
    (pieces of `pool`: tasks on a cluster) whose sums are added here in block order."""
    from ..cluster import LocalPool
    progress = progress or Progress()
    pool = pool or LocalPool()
    prediction = str(Path(prediction).resolve())
    with rasterio.open(prediction) as src:
        if src.crs is None or src.crs.is_geographic:
            raise ValueError("PREDICTION must be in a metric CRS (the one segment_glaciers wrote)")
        require_overlap(inventory, [(src.crs, src.bounds)], "PREDICTION")
        kind = kind_from_blocks(src)
        crs, transform, shape = src.crs, src.transform, (src.height, src.width)
    if quality_raster:
        quality_raster = str(Path(quality_raster).resolve())
        with rasterio.open(quality_raster) as q:
            if (q.height, q.width) != shape or q.transform != transform:
                raise ValueError("QUALITY raster must share the prediction's grid")
            if quality_band(q, quality) is None:
                raise ValueError(f"QUALITY raster {quality_raster} has no SCL/QUALITY band")
    n = len(inventory.geometries)
    near = inventory.near(crs, array_bounds(shape[0], shape[1], transform))
    local = inventory.subset(near)  # only the outlines near the raster travel to the pieces
    blocks = [(r, min(r + BLOCK_ROWS, shape[0])) for r in range(0, shape[0], BLOCK_ROWS)]
    parts = pool.run(evaluate_rows, [(rows,) for rows in blocks], progress,
                     common=(local, prediction, quality_raster, quality, kind, threshold))
    total = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    stats = np.zeros((5, n + 1), np.int64)  # n_px, n_masked, n_pred_valid, n_valid, n_pred_all
    ring_n = np.zeros((len(RINGS_M), n + 1), np.int64)
    ring_fp = np.zeros_like(ring_n)
    to_global = np.concatenate([[0], near + 1])  # the pieces number the nearby outlines 1..m
    for part in parts:
        total = add(total, part["confusion"])
        keys, values = part["glaciers"]
        stats[:, to_global[keys]] += values
        if "rings" in part:
            rkeys, rn, rfp = part["rings"]
            ring_n[:, to_global[rkeys]] += rn
            ring_fp[:, to_global[rkeys]] += rfp
    overall = dict(scores(total), **total)
    n_px, n_masked, n_pred_valid, n_valid, n_pred_all = stats
    records = []
    pixel_km2 = abs(transform.a * transform.e) / 1e6
    # Pixel counts are planar in the raster CRS: scale them to the ellipsoid per glacier
    # (only the outlines near this raster are transformed).
    planar = np.zeros(n + 1)
    planar[near + 1] = [g.area / 1e6 if g is not None else 0.0
                        for g in local.to_crs(crs.to_wkt()).geometries]
    for k, (gid, geom) in enumerate(zip(inventory.ids, inventory.geometries), start=1):
        area_inv = ellipsoidal_area_km2(geom, inventory.crs) if geom is not None else 0.0
        factor = area_inv / planar[k] if planar[k] > 0 else 1.0
        rec = dict(id=gid, area_inventory_km2=area_inv,
                   area_predicted_km2=n_pred_all[k] * pixel_km2 * factor,
                   recall=(n_pred_valid[k] / n_valid[k]) if n_valid[k] else float("nan"),
                   masked_fraction=(n_masked[k] / n_px[k]) if n_px[k] else float("nan"),
                   pixels=int(n_px[k]))
        for j, (lo, hi) in enumerate(RINGS_M):
            rec[f"fp_{lo}_{hi}m_km2"] = ring_fp[j, k] * pixel_km2 * factor
            rec[f"fp_{lo}_{hi}m_fraction"] = (ring_fp[j, k] / ring_n[j, k]) if ring_n[j, k] else float("nan")
        records.append(rec)
    return Evaluation(overall, records)
