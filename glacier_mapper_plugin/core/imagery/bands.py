"""Which raster band is which model input, and how its numbers become physical units.

Sentinel-2 L2A digital numbers are decoded to surface reflectance with the file's scale and
the +1000 offset of processing baseline >= 04.00 where the DNs carry it (decided from the
file's metadata and its pixels: core.imagery.reflectance), so that scenes from before and after
04.00 look the same to a model. Elevation stays in metres.
"""
from __future__ import annotations

from pathlib import Path

import re
from dataclasses import dataclass

import numpy as np

from . import reflectance
from . import sentinel2 as s2

ELEVATION_NAMES = ("DEM", "ELEVATION", "HEIGHT", "Z")


def canonical(name: str | None) -> str:
    """'B02' -> 'B2', 'b8a' -> 'B8A', 'dem' -> 'DEM'; first word only ('B4 (red)' -> 'B4')."""
    if not name:
        return ""
    word = str(name).strip().split()[0].upper() if str(name).strip() else ""
    m = re.fullmatch(r"B0*(\d+A?)", word)
    if m:
        return "B" + m.group(1)
    return "DEM" if word in ELEVATION_NAMES else word


def parse_mapping(text: str | None) -> dict[str, int]:
    """'B2=1,B3=2,DEM=7' -> {'B2': 1, 'B3': 2, 'DEM': 7} (1-based raster band numbers)."""
    mapping: dict[str, int] = {}
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"BANDS: {part.strip()!r} is not NAME=NUMBER (e.g. B2=1,B3=2)")
        name, number = part.split("=", 1)
        try:
            mapping[canonical(name)] = int(number)
        except ValueError:
            raise ValueError(f"BANDS: band number {number.strip()!r} for {name.strip()} is not "
                             "an integer") from None
    return mapping


def match_bands(descriptions, wanted, mapping: dict[str, int] | None = None,
                external: tuple[str, ...] = (), source: str = "the raster") -> dict[str, int | None]:
    """Model band name -> 1-based raster band (None when supplied by an external raster)."""
    count = len(descriptions)
    found = {canonical(d): i for i, d in enumerate(descriptions, start=1) if canonical(d)}
    result: dict[str, int | None] = {}
    missing = []
    for name in wanted:
        key = canonical(name)
        if mapping and key in mapping:
            if not 1 <= mapping[key] <= count:
                raise ValueError(f"BANDS: {key}={mapping[key]} but {source} has {count} bands")
            result[name] = mapping[key]
        elif key in found:
            result[name] = found[key]
        elif key in external:
            result[name] = None
        else:
            missing.append(name)
    if missing:
        have = ", ".join(canonical(d) or f"band {i} (no name)" for i, d in
                         enumerate(descriptions, start=1))
        raise ValueError(f"{source} has no band for {', '.join(missing)} (the model expects "
                         f"{', '.join(wanted)}; it has {have}). Name the bands in the "
                         "file or give a BANDS mapping such as B2=1,B3=2,B4=3,B8=4,B12=5"
                         + ("" if "DEM" not in [canonical(m) for m in missing] else
                            ", and give a DEM raster"))
    return result


@dataclass
class Decoder:
    """value = dn * scale + offset; `nodata` DN values (and NaN) are no data."""
    scale: float = 1.0
    offset: float = 0.0
    nodata: tuple = ()

    def invalid(self, dn: np.ndarray) -> np.ndarray:
        """Boolean no-data mask of raw values."""
        invalid = ~np.isfinite(dn) if np.issubdtype(dn.dtype, np.floating) else None
        for nd in {float(v) for v in self.nodata if v is not None and not np.isnan(v)}:
            invalid = dn == nd if invalid is None else np.logical_or(invalid, dn == nd, out=invalid)
        return np.zeros(dn.shape, bool) if invalid is None else invalid

    def __call__(self, dn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float32 values, boolean no-data mask); no-data values are 0."""
        return self.standardise(dn, 0.0, 1.0)

    def standardise(self, dn: np.ndarray, mean: float, std: float, out=None, fill=True):
        """((value - mean) / std as float32, no-data mask) in two passes over the data:
        decoding and standardising fold into one multiply-add (this runs on every pixel).
        No-data pixels become 0 (the mean) unless `fill` is False (the caller does it)."""
        a = np.float32(self.scale / std)
        b = np.float32((self.offset - mean) / std)
        out = np.empty(dn.shape, np.float32) if out is None else out
        np.multiply(dn, a, out=out, casting="unsafe")
        out += b
        invalid = self.invalid(dn)
        if fill:
            out[invalid] = 0.0
        return out, invalid


# Float rasters: reflectance stays below ~1.6 even on fresh snow and cloud tops; digital
# numbers (quantified x 10000) of any surface brighter than 0.01 exceed 100.
REFLECTANCE_MAX = 2.0
DN_MEDIAN_MIN = 50.0


def float_units(src, bands: list[int], sample) -> str:
    """'reflectance' or 'dn' for float Sentinel-2 bands, decided from their values (`sample`,
    one array per band: a Float32 GeoTIFF of DNs is common after a reprojection or a mosaic in
    another tool); GDAL scale/offset, where set, say it outright. Refused when the values look
    like neither."""
    scaled = [b for b in bands if src.scales[b - 1] not in (None, 1.0) or src.offsets[b - 1] not in (None, 0.0)]
    if scaled:
        return "dn"
    values = np.concatenate([v[np.isfinite(v) & (v != 0)] for v in sample])
    if values.size < reflectance.MIN_PIXELS:
        return "reflectance"  # nothing to go by: the float convention
    p99, median = float(np.percentile(values, 99)), float(np.median(values))
    if p99 <= REFLECTANCE_MAX:
        return "reflectance"
    if median >= DN_MEDIAN_MIN:
        return "dn"
    raise ValueError(f"INPUT: the float bands of {src.name} look neither like surface reflectance "
                     f"(0-1.6) nor like digital numbers (0-10000+): median {median:.3g}, 99th "
                     f"percentile {p99:.3g}. Convert them to one or the other (or set the GDAL "
                     "scale/offset of the bands)")


def decoder_for(src, band: int, name: str, offset=None, dn: bool | None = None) -> Decoder:
    """How to decode band `band` of an open rasterio dataset as model input `name`.
    `offset` (a reflectance.OffsetDecision) says whether the DNs carry the +1000 offset;
    `dn` whether the band holds DNs (default: integer bands do); see `offset_decision`."""
    nodata = (src.nodatavals[band - 1],)
    if dn is None:
        dn = bool(np.issubdtype(np.dtype(src.dtypes[band - 1]), np.integer))
    if canonical(name) == "DEM" or not dn:
        return Decoder(1.0, 0.0, nodata)
    scale = reflectance.raster_metadata(src, band)[0]
    dn_offset = offset.offset if offset is not None else 0.0
    return Decoder(scale, dn_offset * scale, nodata + (s2.NODATA,))


def offset_decision(src, index: dict, progress=None):
    """(decision, DN bands) for the Sentinel-2 bands of `src`: which bands hold digital numbers
    (integer ones, and float ones whose values are DNs: float_units) and one decision about
    their +1000 offset (None when no band holds DNs): the file's metadata, checked against a
    bounded sample of its pixels (surfaces that cannot be negative, where a SCL/QUALITY band
    exists)."""
    optical = [b for name, b in index.items() if b is not None and canonical(name) != "DEM"]
    if not optical:
        return None, set()
    names = [canonical(d) for d in src.descriptions]
    quality = next((i for i, n in enumerate(names, start=1) if n in ("SCL", "QUALITY")), None)
    sample, clear = reflectance.sample_raster(src, optical, quality)  # one bounded read for both
    values = dict(zip(optical, sample))
    floats = [b for b in optical if not np.issubdtype(np.dtype(src.dtypes[b - 1]), np.integer)]
    dn_bands = [b for b in optical if b not in floats]
    if floats:
        units = float_units(src, floats, [values[b] for b in floats])
        if progress is not None:
            held = "digital numbers (decoded x 1/10000)" if units == "dn" else "surface reflectance (used as they are)"
            progress.info(f"float bands of {src.name} hold {held}, decided from their values")
        if units == "dn":
            dn_bands += floats
    if not dn_bands:
        return None, set()
    _, metadata, source = reflectance.raster_metadata(src, dn_bands[0])
    decision = reflectance.decide(metadata, source, [values[b] for b in dn_bands], clear)
    if progress is not None:
        message = f"Sentinel-2 DNs of {src.name}: {decision.describe()}"
        if decision.overruled:
            progress.warning(message + "; following the pixels")
        elif decision.disagreement:
            progress.warning(message + "; the pixels' evidence is weak: following the metadata")
        elif decision.decided_by == "assumed":
            progress.warning(message + "; assuming no offset: set a BOA_ADD_OFFSET tag (-1000 or 0) on the raster")
        else:
            progress.info(message)
    return decision, set(dn_bands)


def band_readers(stack, src, wanted, mapping=None, dem_path=None, progress=None):
    """[(dataset, band number, Decoder)] for each wanted band, in order. A DEM that is not a
    band of `src` is read from `dem_path`, warped on the fly onto the grid of `src`
    (bilinear); datasets opened here are closed by the ExitStack `stack`."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    index = match_bands(src.descriptions, wanted, mapping, ("DEM",) if dem_path else (),
                        f"the raster {Path(str(src.name)).name}")
    readers, dem_vrt = [], None
    offset, dn_bands = offset_decision(src, index, progress)
    for name in wanted:
        if index[name] is not None:
            readers.append((src, index[name], decoder_for(src, index[name], name, offset,
                                                          index[name] in dn_bands)))
            continue
        if dem_vrt is None:
            dem_src = stack.enter_context(rasterio.open(dem_path))
            if dem_src.crs is None:
                raise ValueError("DEM has no CRS: georeference it first")
            dem_vrt = stack.enter_context(WarpedVRT(
                dem_src, crs=src.crs, transform=src.transform, width=src.width,
                height=src.height, resampling=Resampling.bilinear, src_nodata=dem_src.nodata,
                nodata=np.nan if dem_src.nodata is None else dem_src.nodata, dtype="float32"))
        readers.append((dem_vrt, 1, decoder_for(dem_vrt, 1, "DEM")))
    if progress is not None:
        progress.info("bands: " + ", ".join(
            f"{n}<-{'DEM raster' if index[n] is None else f'band {index[n]}'}" for n in wanted))
    return readers
