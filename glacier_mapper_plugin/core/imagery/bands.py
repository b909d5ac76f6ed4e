"""Which raster band is which model input, and how its numbers become physical units.

Sentinel-2 L2A digital numbers are decoded to surface reflectance with the file's scale and
the +1000 offset of processing baseline >= 04.00 where the DNs carry it (decided from the
file's metadata and its pixels: core.imagery.reflectance), so that scenes from before and after
04.00 look the same to a model. Elevation stays in metres.
"""
from __future__ import annotations

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
                external: tuple[str, ...] = ()) -> dict[str, int | None]:
    """Model band name -> 1-based raster band (None when supplied by an external raster)."""
    count = len(descriptions)
    found = {canonical(d): i for i, d in enumerate(descriptions, start=1) if canonical(d)}
    result: dict[str, int | None] = {}
    missing = []
    for name in wanted:
        key = canonical(name)
        if mapping and key in mapping:
            if not 1 <= mapping[key] <= count:
                raise ValueError(f"BANDS: {key}={mapping[key]} but the raster has {count} bands")
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
        raise ValueError(f"the raster has no band for {', '.join(missing)} (the model expects "
                         f"{', '.join(wanted)}; the raster has {have}). Name the bands in the "
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


def decoder_for(src, band: int, name: str, offset=None) -> Decoder:
    """How to decode band `band` of an open rasterio dataset as model input `name`.
    `offset` (a reflectance.OffsetDecision) says whether integer DNs carry the +1000 offset;
    see `offset_decision`."""
    nodata = (src.nodatavals[band - 1],)
    integer = np.issubdtype(np.dtype(src.dtypes[band - 1]), np.integer)
    if canonical(name) == "DEM" or not integer:
        return Decoder(1.0, 0.0, nodata)
    scale = reflectance.raster_metadata(src, band)[0]
    dn_offset = offset.offset if offset is not None else 0.0
    return Decoder(scale, dn_offset * scale, nodata + (s2.NODATA,))


def offset_decision(src, index: dict, progress=None):
    """One decision for the integer Sentinel-2 bands of `src` (None when there are none):
    the file's metadata, checked against a bounded sample of its pixels (SCL-clear where a
    SCL/QUALITY band exists)."""
    optical = [b for name, b in index.items() if b is not None and canonical(name) != "DEM"
               and np.issubdtype(np.dtype(src.dtypes[b - 1]), np.integer)]
    if not optical:
        return None
    _, metadata, source = reflectance.raster_metadata(src, optical[0])
    names = [canonical(d) for d in src.descriptions]
    quality = next((i for i, n in enumerate(names, start=1) if n in ("SCL", "QUALITY")), None)
    sample, clear = reflectance.sample_raster(src, optical, quality)
    decision = reflectance.decide(metadata, source, sample, clear)
    if progress is not None:
        message = f"Sentinel-2 DNs of {src.name}: {decision.describe()}"
        if decision.disagreement or decision.decided_by == "assumed":
            progress.warning(message + (
                "; following the pixels" if decision.disagreement else
                "; assuming no offset: set a BOA_ADD_OFFSET tag (-1000 or 0) on the raster"))
        else:
            progress.info(message)
    return decision


def band_readers(stack, src, wanted, mapping=None, dem_path=None, progress=None):
    """[(dataset, band number, Decoder)] for each wanted band, in order. A DEM that is not a
    band of `src` is read from `dem_path`, warped on the fly onto the grid of `src`
    (bilinear); datasets opened here are closed by the ExitStack `stack`."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    index = match_bands(src.descriptions, wanted, mapping, ("DEM",) if dem_path else ())
    readers, dem_vrt = [], None
    offset = offset_decision(src, index, progress)
    for name in wanted:
        if index[name] is not None:
            readers.append((src, index[name], decoder_for(src, index[name], name, offset)))
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
