"""Sentinel-2 L2A conventions in one place: band names, scaling, the processing-baseline
offset and the Scene Classification (SCL) classes."""
from __future__ import annotations

import numpy as np

# The model's optical inputs, in the order of Diaconu & Bamber (2023).
BANDS = ("B2", "B3", "B4", "B8", "B12")
NODATA = 0                  # L2A digital numbers: 0 means no data
QUANTIFICATION = 10000      # reflectance = (DN + offset) / 10000
BOA_ADD_OFFSET = -1000      # added to DN from processing baseline 04.00 (25 Jan 2022) on

# Scene classification (SCL) classes.
SCL = {0: "no_data", 1: "saturated_or_defective", 2: "dark_area_pixels", 3: "cloud_shadows",
       4: "vegetation", 5: "not_vegetated", 6: "water", 7: "unclassified",
       8: "cloud_medium_probability", 9: "cloud_high_probability", 10: "thin_cirrus",
       11: "snow"}
# Pixels that say nothing about the surface: excluded from training loss and area counts.
SCL_MASKED = (0, 1, 3, 8, 9, 10)


def boa_offset(processing_baseline: str | float | None) -> int:
    """The DN offset for a processing baseline: -1000 from 04.00 on, 0 before."""
    if processing_baseline is None or processing_baseline == "":
        raise ValueError("processing baseline unknown: cannot tell whether DNs carry the "
                         "-1000 offset (set the PROCESSING_BASELINE tag)")
    return BOA_ADD_OFFSET if float(processing_baseline) >= 4.0 else 0


def to_reflectance(dn: np.ndarray, processing_baseline) -> np.ndarray:
    """uint16 DN -> float32 surface reflectance, NaN where DN == 0 (no data)."""
    dn = np.asarray(dn)
    refl = (dn.astype(np.float32) + boa_offset(processing_baseline)) / QUANTIFICATION
    refl[dn == NODATA] = np.nan
    return refl


def to_dn(reflectance: np.ndarray, processing_baseline) -> np.ndarray:
    """float reflectance -> uint16 DN with the baseline's offset; NaN -> 0 (no data)."""
    refl = np.asarray(reflectance, dtype=np.float64)
    dn = np.rint(refl * QUANTIFICATION) - boa_offset(processing_baseline)
    dn = np.clip(dn, 1, 65535)
    dn[~np.isfinite(refl)] = NODATA
    return dn.astype(np.uint16)
