"""Does a Sentinel-2 L2A raster still carry the +1000 DN offset of processing baseline >= 04.00?

From 25 January 2022 (baseline 04.00) ESA adds BOA_ADD_OFFSET = -1000 to the decoding:
reflectance = (DN - 1000) / 10000. Catalogs answer "is the offset still in these DNs?" in
different ways, and not always rightly:
- Earth Search v1 `sentinel-2-l2a` removed the offset from most COGs and says so with
  `earthsearch:boa_offset_applied`, while `raster:bands` declares offset -0.1 on every item
  (old and new); the flag itself is wrong on some items (Element84/earth-search #33, #66, #71).
- Earth Search `sentinel-2-c1-l2a` (Collection 1, reprocessed with baseline >= 05.00) keeps
  the offset in the DNs and declares it rightly in `raster:bands`; no flag.
- Planetary Computer keeps ESA's DNs; only `s2:processing_baseline` tells.
- Local GeoTIFFs: GDAL scale/offset, a BOA_ADD_OFFSET or PROCESSING_BASELINE tag, or nothing.

So the metadata gives a first answer and the pixels the last word, on strong evidence only.
With the offset in the DNs a valid DN below 1000 is a negative reflectance. Sen2Cor keeps
those where the surface is dark and its correction overshoots: water (SCL 6), dark-area
pixels and topographic shadow (SCL 2) and cloud shadow (SCL 3) carry slightly negative SWIR
and NIR reflectance in real products of baseline >= 04.00. So the evidence comes only from
surfaces whose reflectance cannot go negative (vegetation, bare ground, snow and ice,
unclassified: SCL 4, 5, 7, 11), and for a STAC item from a bounded sample of the whole item
(core.imagery.acquire), not from one glacier's chip: every chip cut from an item is decoded by
the same decision, whichever glaciers a run holds. Without the offset every glacier ice and
old snow surface in B12 (SWIR reflectance 0.01-0.06) gives DNs far below 1000. Over those
pixels of the five optical bands:
- some band has at least 1 % of its values below NO_OFFSET_BELOW (900): with the offset they
  would be reflectances below -0.01: the offset is not in the DNs;
- no band has more than CLIFF_SHARE (0.05 %) of its values below 1000, while the darkest band
  has at least NEAR_SHARE (2 %) in [1000, 1250): the darkest surfaces pile up just above
  1000 and stop there, a cliff no natural reflectance distribution has at 0.10: the offset
  is in the DNs;
- otherwise (a bright window: all snow or debris without shadow; fewer than MIN_PIXELS valid
  pixels) the pixels cannot tell: the metadata decides and the decision is marked as such.
Where metadata and pixels disagree the pixels win only on strong evidence: at least
STRONG_PIXELS pixels, and either STRONG_SHARE (5 %) of a band below 900, or a clean cliff (at
most STRONG_CLIFF, one in 10,000, below 1000 while NEAR_SHARE of the darkest band lies just
above it); weaker contrary evidence is reported with its numbers and the metadata decides. Evidence on real files (tests/core/imagery/test_reflectance.py): sen2r's
Barbellino L2A (2017, 2019, no offset) has 15-78 % of its values below 900 per band; the same
DNs + 1000 have none below 1000 and 7-24 % in [1000, 1250); snowicesen's glacier-only
visible/NIR chips are either decided right or undecided (one has 0.07 % below 1000 in B8A),
never wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import sentinel2 as s2

OFFSET_DN = -s2.BOA_ADD_OFFSET     # 1000: what baseline >= 04.00 adds to every DN
NO_OFFSET_BELOW = 900.0
CLIFF_SHARE = 0.0005
NEAR_ABOVE = 1250.0
NEAR_SHARE = 0.02
MIN_PIXELS = 100
MAX_SAMPLE = 65536
DARK_PERCENTILE = 1.0
STRONG_PIXELS = 1000
STRONG_SHARE = 0.05
STRONG_CLIFF = 0.0001
# SCL classes whose reflectance can be slightly negative (dark area and topographic shadow,
# cloud shadow, water) or says nothing (no data, defective, clouds, cirrus): no evidence.
NO_EVIDENCE = tuple(sorted(set(s2.SCL_MASKED) | {2, 3, 6}))


def _yes_no(value: bool | None) -> str:
    return {True: "offset in DNs", False: "no offset in DNs", None: "undecided"}[value]


@dataclass
class OffsetDecision:
    """Whether the DNs carry the +1000 offset, and how that was decided."""
    offset_in_dn: bool
    decided_by: str                  # metadata | pixels | metadata+pixels | assumed
    metadata: bool | None
    metadata_source: str
    evidence: "Evidence"

    @property
    def pixels(self) -> bool | None:
        return self.evidence.verdict

    @property
    def dark_dn(self) -> float:
        return self.evidence.dark_dn

    @property
    def n_pixels(self) -> int:
        return self.evidence.n

    @property
    def offset(self) -> float:
        """The DN offset to add before scaling: -1000 or 0."""
        return float(s2.BOA_ADD_OFFSET) if self.offset_in_dn else 0.0

    @property
    def disagreement(self) -> bool:
        """Metadata and pixels say different things (whoever was followed)."""
        return self.metadata is not None and self.pixels is not None and self.metadata != self.pixels

    @property
    def overruled(self) -> bool:
        """The pixels' strong evidence overruled the metadata."""
        return self.disagreement and self.decided_by == "pixels"

    def describe(self) -> str:
        text = f"{_yes_no(self.offset_in_dn)}, decided by {self.decided_by}"
        return f"{text}; metadata: {_yes_no(self.metadata)} ({self.metadata_source}); {self.evidence.describe()}"

    def tags(self) -> dict[str, str]:
        ev = self.evidence
        return {"BOA_OFFSET_IN_SOURCE_DN": "yes" if self.offset_in_dn else "no",
                "OFFSET_DECIDED_BY": self.decided_by,
                "OFFSET_METADATA": f"{_yes_no(self.metadata)} ({self.metadata_source})",
                "OFFSET_PIXELS": _yes_no(self.pixels),
                "OFFSET_DARK_DN_P1": f"{ev.dark_dn:.0f}" if np.isfinite(ev.dark_dn) else "nan",
                "OFFSET_EVIDENCE": ev.describe()}


class Evidence(NamedTuple):
    """What the pixels say about the offset, with the numbers that say it."""
    verdict: bool | None        # True: offset in DNs, False: not, None: cannot tell
    dark_dn: float              # the darkest band's 1st percentile
    n: int                      # pixels looked at
    below: float = float("nan")  # largest share of a band below NO_OFFSET_BELOW (900)
    under: float = float("nan")  # largest share of a band below 1000
    near: float = float("nan")   # the darkest band's share in [1000, NEAR_ABOVE)

    @property
    def strong(self) -> bool:
        """Enough to overrule the metadata."""
        if self.verdict is None or self.n < STRONG_PIXELS:
            return False
        if self.verdict is False:
            return self.below >= STRONG_SHARE
        return self.under <= STRONG_CLIFF and self.near >= NEAR_SHARE

    def describe(self) -> str:
        if not self.n:
            return "pixels: none valid"
        return (f"pixels: {_yes_no(self.verdict)} ({'strong' if self.strong else 'weak'} evidence: "
                f"{self.n} land/snow pixels; {100 * self.below:.2f} % of a band below DN 900, "
                f"{100 * self.under:.2f} % below 1000, {100 * self.near:.2f} % of the darkest band "
                f"in 1000-1250; its 1st percentile DN {self.dark_dn:.0f})")


def evidence_mask(scl) -> np.ndarray:
    """Pixels whose SCL class is a surface that cannot have negative reflectance."""
    return ~np.isin(np.asarray(scl), NO_EVIDENCE)


def pixel_evidence(bands, valid=None) -> Evidence:
    """What raw DN arrays of the optical bands say about the offset. `valid` (optional) is a
    boolean mask of pixels worth looking at (evidence_mask of the SCL); DN 0 and NaN are no
    data in any case."""
    bands = [np.asarray(b) for b in bands]
    ok = np.ones(bands[0].shape, bool) if valid is None else np.asarray(valid, bool).copy()
    for b in bands:
        ok &= np.isfinite(b) & (b > 0)
    n = int(ok.sum())
    if n < MIN_PIXELS:
        return Evidence(None, float("nan"), n)
    # A strided sample bounds the cost on large windows; 65,536 values place the 1st
    # percentile and a 0.05 % share (33 values) well enough.
    step = max(1, n // MAX_SAMPLE)
    values = [b[ok][::step] for b in bands]
    lows = [float(np.percentile(v, DARK_PERCENTILE)) for v in values]
    darkest = values[int(np.argmin(lows))]
    below = max(float(np.mean(v < NO_OFFSET_BELOW)) for v in values)
    under = max(float(np.mean(v < OFFSET_DN)) for v in values)
    near = float(np.mean((darkest >= OFFSET_DN) & (darkest < NEAR_ABOVE)))
    if min(lows) < NO_OFFSET_BELOW:  # >= 1 % of some band's values below 900
        verdict = False
    elif under <= CLIFF_SHARE and near >= NEAR_SHARE:
        verdict = True
    else:
        verdict = None
    return Evidence(verdict, min(lows), n, below, under, near)


def decide(metadata: bool | None, source: str, bands, valid=None) -> OffsetDecision:
    """Metadata first, pixels last and only on strong evidence (see the module docstring)."""
    ev = pixel_evidence(bands, valid)
    if ev.verdict is None:
        if metadata is None:
            # Nothing tells: ESA's pre-2022 convention is the historical default of every
            # archive without the field; the caller warns.
            return OffsetDecision(False, "assumed", None, source, ev)
        return OffsetDecision(metadata, "metadata", metadata, source, ev)
    if metadata is None or (metadata != ev.verdict and ev.strong):
        return OffsetDecision(ev.verdict, "pixels", metadata, source, ev)
    if metadata != ev.verdict:  # weak contrary evidence: reported, not followed
        return OffsetDecision(metadata, "metadata", metadata, source, ev)
    return OffsetDecision(metadata, "metadata+pixels", metadata, source, ev)


def _baseline_new(baseline) -> bool | None:
    try:
        return float(baseline) >= 4.0
    except (TypeError, ValueError):
        return None


def stac_metadata(properties: dict, raster_band: dict | None) -> tuple[float, bool | None, str]:
    """(scale, offset in DNs according to the item, which field said so) for one STAC asset.

    Earth Search's flag outranks its `raster:bands` offset, which is -0.1 on every v1 item
    whether or not the COG still holds the offset."""
    raster_band = raster_band or {}
    scale = float(raster_band.get("scale") or 1.0 / s2.QUANTIFICATION)
    baseline = properties.get("s2:processing_baseline") or properties.get("processing:version")
    flag = properties.get("earthsearch:boa_offset_applied")
    if flag is not None:
        if flag:
            return scale, False, "earthsearch:boa_offset_applied=true"
        new = _baseline_new(baseline)
        return scale, new, f"earthsearch:boa_offset_applied=false, s2:processing_baseline {baseline}"
    if "offset" in raster_band:
        dn_offset = float(raster_band["offset"]) / scale
        return scale, dn_offset <= -OFFSET_DN / 2, f"raster:bands offset {float(raster_band['offset']):g}"
    if baseline:
        return scale, _baseline_new(baseline), f"s2:processing_baseline {baseline}"
    return scale, None, "no offset metadata"


def raster_metadata(src, band: int) -> tuple[float, bool | None, str]:
    """(scale, offset in DNs according to the file, which field said so) for band `band`
    (1-based) of an open rasterio dataset."""
    scale, offset = src.scales[band - 1], src.offsets[band - 1]
    if scale not in (None, 1.0) or offset not in (None, 0.0):
        scale = float(scale or 1.0)
        return scale, float(offset or 0.0) / scale <= -OFFSET_DN / 2, f"GDAL scale {scale:g} offset {offset or 0:g}"
    tags = {**src.tags(), **src.tags(band)}
    quantum = 1.0 / s2.QUANTIFICATION
    if "BOA_ADD_OFFSET" in tags:
        return quantum, float(tags["BOA_ADD_OFFSET"]) <= -OFFSET_DN / 2, f"BOA_ADD_OFFSET {tags['BOA_ADD_OFFSET']}"
    if tags.get("PROCESSING_BASELINE"):
        return quantum, _baseline_new(tags["PROCESSING_BASELINE"]), f"PROCESSING_BASELINE {tags['PROCESSING_BASELINE']}"
    return quantum, None, "no offset metadata"


def sample_raster(src, bands: list[int], quality: int | None = None, windows: int = 4,
                  size: int = 128) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Raw DNs of `bands` in windows x windows small windows spread over the raster (a fixed,
    bounded read whatever the raster's size), and the evidence mask (evidence_mask) when a
    quality band is given."""
    from rasterio.windows import Window
    h, w = src.height, src.width
    size_r, size_c = min(size, h), min(size, w)
    rows = np.linspace(0, h - size_r, windows).astype(int) if h > size_r else [0]
    cols = np.linspace(0, w - size_c, windows).astype(int) if w > size_c else [0]
    out = [[] for _ in bands]
    clear = []
    for r in sorted(set(rows)):
        for c in sorted(set(cols)):
            win = Window(int(c), int(r), size_c, size_r)
            for i, b in enumerate(bands):
                out[i].append(src.read(b, window=win).ravel())
            if quality is not None:
                q = src.read(quality, window=win).ravel()
                clear.append(evidence_mask(q))
    arrays = [np.concatenate(o).astype(np.float32) for o in out]
    return arrays, (np.concatenate(clear) if quality is not None else None)
