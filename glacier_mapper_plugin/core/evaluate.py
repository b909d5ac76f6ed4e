"""A prediction (probability or mask) against an inventory: pixel metrics overall and, per
glacier, the numbers area change needs: inventory area, predicted area inside the outline,
recall, masked fraction, and false positives in rings just outside the outline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.transform import array_bounds
from scipy import ndimage

from .geodesy import ellipsoidal_area_km2
from .labels import Inventory, masked_from_quality, quality_band, rasterize_ids
from .metrics import confusion, scores

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
    lo, hi = float(v.min()), float(v.max())
    description = (src.descriptions[0] or "").lower()
    if np.issubdtype(values.dtype, np.floating):
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


def read_prediction(src, threshold: float = 0.5, parameter="PREDICTION"):
    """(glacier bool, no-data bool) from a probability (0-1 float or 0-100 uint8) or mask."""
    band = src.read(1, masked=True)
    nodata = np.ma.getmaskarray(band)
    values = band.filled(0)
    if np.issubdtype(values.dtype, np.floating):
        nodata |= ~np.isfinite(values)
    kind = prediction_kind(src, values, ~nodata, parameter)
    if kind == "probability":
        glacier = np.nan_to_num(values) >= threshold
    elif kind == "mask":
        glacier = values == 1
    else:
        glacier = values >= threshold * 100
    return glacier & ~nodata, nodata


def ring_counts(ids, glacier, valid, pixel: float, n: int):
    """Per ring (RINGS_M) and glacier: valid pixels outside all outlines whose nearest
    outline is that glacier, and how many of them are predicted glacier. Computed in a
    window around each glacier, not with a distance transform of the whole raster (4-5 GB
    for a 10980 px tile): a pixel within R of glacier k has its nearest outline within R,
    so a window of k's box plus 2R decides it exactly."""
    reach = int(np.ceil(max(hi for _, hi in RINGS_M) / pixel)) + 1
    ring_n = np.zeros((len(RINGS_M), n + 1), np.int64)
    ring_fp = np.zeros_like(ring_n)
    for k, box in enumerate(ndimage.find_objects(ids), start=1):
        if box is None:
            continue
        win = tuple(slice(max(b.start - 2 * reach, 0), b.stop + 2 * reach) for b in box)
        sub = ids[win]
        dist, (ri, ci) = ndimage.distance_transform_edt(sub == 0, sampling=pixel, return_indices=True)
        mine = (sub[ri, ci] == k) & (sub == 0) & valid[win]
        for j, (lo, hi) in enumerate(RINGS_M):
            ring = mine & (dist > lo) & (dist <= hi)
            ring_n[j, k] = int(ring.sum())
            ring_fp[j, k] = int((ring & glacier[win]).sum())
    return ring_n, ring_fp


def evaluate(prediction, inventory: Inventory, quality_raster=None, quality="auto",
             threshold: float = 0.5) -> Evaluation:
    """Compare a prediction raster with the inventory outlines (any CRS)."""
    with rasterio.open(prediction) as src:
        if src.crs is None or src.crs.is_geographic:
            raise ValueError("PREDICTION must be in a metric CRS (the one segment_glaciers wrote)")
        glacier, nodata = read_prediction(src, threshold)
        crs, transform = src.crs, src.transform
        shape = (src.height, src.width)
    masked = nodata.copy()
    if quality_raster:
        with rasterio.open(quality_raster) as q:
            if (q.height, q.width) != shape or q.transform != transform:
                raise ValueError("QUALITY raster must share the prediction's grid")
            qb = quality_band(q, quality)
            if qb is None:
                raise ValueError(f"QUALITY raster {quality_raster} has no SCL/QUALITY band")
            masked |= masked_from_quality(q.read(qb))
    ids = rasterize_ids(inventory, crs, transform, shape)
    truth = ids > 0
    valid = ~masked
    c = confusion(glacier, truth, valid)
    overall = dict(scores(c), **c)

    n = len(inventory.geometries)
    counts = lambda mask: np.bincount(ids[mask], minlength=n + 1)  # noqa: E731
    n_px = counts(truth)
    n_masked = counts(truth & masked)
    n_pred_valid = counts(truth & glacier & valid)
    n_valid = counts(truth & valid)
    n_pred_all = counts(truth & glacier)
    ring_n, ring_fp = ring_counts(ids, glacier, valid, abs(transform.a), n)
    records = []
    pixel_km2 = abs(transform.a * transform.e) / 1e6
    # Pixel counts are planar in the raster CRS: scale them to the ellipsoid per glacier
    # (only the outlines near this raster are transformed).
    near = inventory.near(crs, array_bounds(shape[0], shape[1], transform))
    planar = np.zeros(n + 1)
    planar[near + 1] = [g.area / 1e6 if g is not None else 0.0
                        for g in inventory.subset(near).to_crs(crs.to_wkt()).geometries]
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
