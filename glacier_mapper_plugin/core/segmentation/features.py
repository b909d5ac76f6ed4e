"""Inputs that carry the physics (FEATURES): normalised-difference indices from the bands
present and terrain derivatives of the DEM, computed from the decoded bands the same way
when patches are cut and when a scene is segmented, and recorded in the model file.

NDSI separates snow and ice from rock and cloud (green bright, SWIR dark); NDWI marks the
lakes on and beside tongues; NDVI the vegetation below them; slope, aspect, curvature and
local relief describe where ice can rest (debris-covered tongues are flat, valley floors
concave, ridges steep). The terrain terms are vectorised numpy and scipy.ndimage on the
array in hand: xdem's DEM objects carry a georeferenced grid per call, while a tile or a
patch here is already on the model's grid (Horn's 3x3 slope is what xdem computes too).
"""
from __future__ import annotations

import numpy as np

# index -> ((a, b) band pairs tried in order: Sentinel-2 names, then generic ones); (a - b) / (a + b)
SPECTRAL = {
    "NDSI": (("B3", "B11"), ("GREEN", "SWIR1")),
    "NDWI": (("B3", "B8"), ("GREEN", "NIR")),
    "NDVI": (("B8", "B4"), ("NIR", "RED")),
}
TERRAIN = ("SLOPE", "ASPECT_SIN", "ASPECT_COS", "CURVATURE", "RELIEF")
RELIEF_M = 300.0  # local relief: elevation range within this square window (m)


def parse(text) -> list[str]:
    """'ndsi, slope' -> ['NDSI', 'SLOPE']; 'terrain' is the five terrain terms; unknown names refused."""
    names: list[str] = []
    for part in str(text or "").replace(";", ",").split(","):
        word = part.strip().upper()
        if not word or word == "NONE":
            continue
        for name in (TERRAIN if word == "TERRAIN" else (word,)):
            if name not in SPECTRAL and name not in TERRAIN:
                raise ValueError(f"FEATURES: {part.strip()!r} is not one of {', '.join([*SPECTRAL, *TERRAIN])} "
                                 "(or 'terrain' for all terrain terms)")
            if name not in names:
                names.append(name)
    return names


def check(features, bands) -> None:
    """Every feature's source bands among the model's BANDS, else a message naming them."""
    for name in features:
        if name in TERRAIN and "DEM" not in bands:
            raise ValueError(f"FEATURES: {name} is computed from the DEM: give DEM and keep DEM in BANDS")
        if name in SPECTRAL and _pair(name, bands) is None:
            options = " or ".join(f"{a} and {b}" for a, b in SPECTRAL[name])
            raise ValueError(f"FEATURES: {name} needs {options} among BANDS (the bands are {', '.join(bands)})")


def _pair(name, bands):
    for a, b in SPECTRAL[name]:
        if a in bands and b in bands:
            return bands.index(a), bands.index(b)
    return None


def normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) as float32; 0 where the two bands sum to 0 (no data, deep shadow)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    total = a + b
    out = np.zeros(total.shape, np.float32)
    np.divide(a - b, total, out=out, where=np.abs(total) > 1e-6)
    return out


def derive(x: np.ndarray, bands, features, pixel_m: float) -> np.ndarray:
    """(F, H, W) float32 features of decoded bands x (C, H, W), in the order of `features`."""
    bands = list(bands)
    out = np.empty((len(features),) + x.shape[1:], np.float32)
    terrain = None
    for f, name in enumerate(features):
        if name in SPECTRAL:
            i, j = _pair(name, bands)
            out[f] = normalised_difference(x[i], x[j])
        else:
            if terrain is None:
                terrain = _terrain(x[bands.index("DEM")], pixel_m)
            out[f] = terrain[name]
    return out


def _terrain(dem: np.ndarray, pixel_m: float) -> dict:
    from scipy import ndimage
    z = np.nan_to_num(dem.astype(np.float64), nan=float(np.nanmean(dem)) if np.isfinite(dem).any() else 0.0)
    # Horn (1981): the 3x3 Sobel gradients / (8 * pixel)
    dzdx = ndimage.sobel(z, axis=1, mode="nearest") / (8.0 * pixel_m)
    dzdy = -ndimage.sobel(z, axis=0, mode="nearest") / (8.0 * pixel_m)  # rows run south
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    aspect = np.arctan2(-dzdx, -dzdy)  # downslope direction, clockwise from north
    flat = np.hypot(dzdx, dzdy) < 1e-6
    side = max(3, int(round(RELIEF_M / pixel_m)) | 1)
    return {"SLOPE": slope.astype(np.float32),
            "ASPECT_SIN": np.where(flat, 0.0, np.sin(aspect)).astype(np.float32),
            "ASPECT_COS": np.where(flat, 0.0, np.cos(aspect)).astype(np.float32),
            # the Laplacian per 100 m^2: negative on ridges, positive in hollows
            "CURVATURE": (ndimage.laplace(z, mode="nearest") / pixel_m ** 2 * 1e4).astype(np.float32),
            "RELIEF": (ndimage.maximum_filter(z, side, mode="nearest")
                       - ndimage.minimum_filter(z, side, mode="nearest")).astype(np.float32)}
