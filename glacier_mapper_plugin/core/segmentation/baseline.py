"""The bar a trained model must clear: a one-number threshold on the index a glaciologist
would try first, chosen on the training patches and scored like the model on the
validation glaciers. NDSI (green and SWIR 1.6 um) where the bands allow it, else brightness
(the visible bands' mean, standardised), which is what a snow-and-ice map without SWIR has.
"""
from __future__ import annotations

import numpy as np

from .features import normalised_difference
from .metrics import add, confusion, scores

LEVELS = 256
PATCHES = 400  # a seeded sample of the training patches is enough for one threshold

# (green, SWIR): snow and ice are dark in both SWIR bands, 1.6 um first
NDSI_PAIRS = (("B3", "B11"), ("GREEN", "SWIR1"), ("B3", "B12"), ("GREEN", "SWIR2"))
VISIBLE = ("B2", "B3", "B4", "RED", "GREEN", "BLUE")


def index_of(cache, train_idx):
    """(name, f(x) -> index image in [0, 1]) for decoded, unstandardised patch bands, or
    None when the bands carry neither NDSI nor brightness."""
    bands = list(cache.bands)
    for green, swir in NDSI_PAIRS:
        if green in bands and swir in bands:
            g, s = bands.index(green), bands.index(swir)

            def ndsi(x, g=g, s=s):
                return (normalised_difference(x[g], x[s]) + 1) / 2
            return f"NDSI ({green}, {swir})", ndsi
    visible = [bands.index(b) for b in VISIBLE if b in bands]
    if not visible:
        return None
    lo, hi = _brightness_range(cache, train_idx, visible)

    def brightness(x):
        return np.clip((x[visible].mean(axis=0) - lo) / max(hi - lo, 1e-9), 0, 1)
    return "brightness", brightness


def threshold_baseline(cache, train_idx, val_idx, val_glaciers, seed: int = 0) -> dict | None:
    """{'index', 'threshold', 'val_iou'}: the level with the best pooled IoU on (a sample of)
    the training patches, and its mean per-glacier IoU on the validation patches, or None
    when the bands carry neither index or there is no validation glacier."""
    found = index_of(cache, train_idx) if len(val_idx) and len(train_idx) else None
    if found is None:
        return None
    name, f = found
    rng = np.random.default_rng([seed, 31])
    sample = train_idx if len(train_idx) <= PATCHES else rng.choice(train_idx, PATCHES, replace=False)
    glacier = np.zeros(LEVELS)
    total = np.zeros(LEVELS)
    for i in sample:
        x, y, v = cache.read(int(i))
        level = np.minimum((f(x)[v] * LEVELS).astype(int), LEVELS - 1)
        glacier += np.bincount(level, weights=y[v] > 0, minlength=LEVELS)
        total += np.bincount(level, minlength=LEVELS)
    above_g, above = np.cumsum(glacier[::-1])[::-1], np.cumsum(total[::-1])[::-1]
    iou = above_g / np.maximum(glacier.sum() + above - above_g, 1)
    cut = int(np.argmax(iou)) / LEVELS
    per_glacier: dict = {}
    for i, g in zip(val_idx, val_glaciers):
        x, y, v = cache.read(int(i))
        per_glacier[g] = add(per_glacier.get(g, {}), confusion(f(x) >= cut, y > 0, v))
    ious = [s for s in (scores(c)["iou"] for c in per_glacier.values()) if np.isfinite(s)]
    return {"index": name, "threshold": round(cut, 4), "val_iou": float(np.mean(ious)) if ious else float("nan")}


def _brightness_range(cache, train_idx, visible):
    """The 1st and 99th percentile of the visible mean over a few training patches."""
    values = []
    for i in train_idx[:: max(1, len(train_idx) // 50)]:
        x, _, v = cache.read(int(i))
        values.append(x[visible].mean(axis=0)[v])
    values = np.concatenate(values) if values else np.zeros(1)
    return float(np.percentile(values, 1)), float(np.percentile(values, 99))
