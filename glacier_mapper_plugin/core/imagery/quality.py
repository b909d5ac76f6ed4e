"""Which pixels of a scene say nothing about the surface: the quality (Sentinel-2 scene
classification, SCL) band of a raster and the classes that mask a pixel."""
from __future__ import annotations

import numpy as np

from . import sentinel2 as s2
from .bands import canonical

QUALITY_NAMES = ("SCL", "QUALITY")


def quality_band(src, name: str | None = "auto") -> int | None:
    """1-based index of the quality (SCL) band of an open dataset; None when there is none.
    `name` auto finds a band described SCL or QUALITY; a number or a name picks one."""
    if name in (None, "", "none"):
        return None
    descriptions = [canonical(d) for d in src.descriptions]
    if name == "auto":
        for q in QUALITY_NAMES:
            if q in descriptions:
                return descriptions.index(q) + 1
        return None
    if str(name).isdigit():
        if not 1 <= int(name) <= src.count:
            raise ValueError(f"QUALITY: band {name} but the raster has {src.count} bands")
        return int(name)
    if canonical(name) not in descriptions:
        raise ValueError(f"QUALITY: the raster has no band named {name!r}")
    return descriptions.index(canonical(name)) + 1


def masked_from_quality(values: np.ndarray) -> np.ndarray:
    """True where the SCL-coded quality says no data, saturated, cloud, shadow or cirrus."""
    return np.isin(values, s2.SCL_MASKED)
