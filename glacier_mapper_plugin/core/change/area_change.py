"""Per-glacier and regional glacier area change (Diaconu & Bamber 2023; DL4GAM).

Per glacier, the predicted glacier area *inside the inventory outline* is measured at the
start (inventory) date and the end date; pixels masked by cloud, shadow or no data are
filled in with the recall seen on the unmasked pixels of the same outline (the paper's
recall correction). Where several rasters show a glacier at one date (per-glacier chips and a
whole scene, overlapping chips), it is measured on the one that shows it best: the least
masked share of its outline (DateCounts.keep_best), named in the table (chip_start,
chip_end). Rate = (A_end - A_start) / dt, also in %/yr of A_start. Filters, each
with its published default: recall of the start prediction against the inventory >= 0.75,
masked share <= 0.20 at either date, and the 5 % most extreme rates dropped (half from each
tail). With an ensemble of predictions per date, each area gets a standard deviation and
each rate sigma_rate = sqrt(s0^2 + s1^2) / dt, and an optional signal-to-noise filter.
A filtered glacier stays in the output with the reason.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import warnings
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np
import rasterio

from ..segmentation.evaluate import kind_from_blocks, read_prediction
from ..geodesy import ellipsoidal_area_km2
from ..imagery.quality import masked_from_quality, quality_band
from ..inventories import decimal_year
from ..labels import Inventory, rasterize_ids, require_overlap
from ..progress import Progress

# Paul et al. (2020) size classes, km2.
SIZE_CLASSES = ((0.1, 0.2), (0.2, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 5.0), (5.0, 10.0),
                (10.0, 20.0), (20.0, float("inf")))


@dataclass
class AreaChangeOptions:
    min_recall: float = 0.75
    max_masked: float = 0.20
    trim_percent: float = 5.0
    min_snr: float = 0.0            # 0: no signal-to-noise filter
    outline_uncertainty_px: float = 0.5  # the buffer method: +- this many pixels along the outline
    threshold: float = 0.5
    start_year: float | None = None  # None: from raster DATE tags, else the inventory dates
    end_year: float | None = None
    quality: str = "auto"


@dataclass
class DateCounts:
    """Per-glacier pixel counts of one prediction on its grid, for the glaciers `index`
    (inventory index + 1; None: all glaciers, position = index)."""
    pixels: np.ndarray       # outline pixels on this raster
    masked: np.ndarray       # of which masked
    predicted: np.ndarray    # unmasked and predicted glacier
    km2: np.ndarray          # area of one pixel on the ellipsoid, per glacier
    year: np.ndarray         # decimal year of the raster (NaN if unknown), per glacier
    outside: np.ndarray      # outline pixels beyond the raster's edge: counted as masked
    index: np.ndarray | None = None
    first_year: float = np.nan     # the raster's own date and pixel area, for glaciers
    pixel_km2: float = 0.0         # that no raster shows
    source: np.ndarray | None = None  # per glacier: the name of the raster measured ("" none)

    FIELDS = ("pixels", "masked", "predicted", "km2", "year", "outside")

    @classmethod
    def empty(cls, n: int) -> "DateCounts":
        return cls(*(np.zeros(n) for _ in range(3)), np.zeros(n), np.full(n, np.nan), np.zeros(n),
                   source=np.full(n, "\uffff", object))  # sorts after any name: never kept over one

    def masked_share(self) -> np.ndarray:
        """Share of each outline this raster does not show (masked or beyond its edge); inf
        where it shows none of it."""
        total = self.pixels + self.outside
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, (self.masked + self.outside) / np.maximum(total, 1), np.inf)

    def keep_best(self, chip: "DateCounts", name: str) -> None:
        """Per glacier, keep the counts of the raster that shows it best: the least masked
        share of its outline (cloud, shadow, no data, beyond the edge); ties go to the raster
        with more outline pixels, then to the file name, so that the order in which the
        rasters are listed never changes a result. Per-glacier chips overlap their
        neighbours and a whole scene overlaps them all: summing would count pixels twice.
        Costs the chip's own glaciers: 5000 chips never make a 5000 x 5000 array."""
        at = chip.index
        new, old = chip.masked_share(), self.masked_share()[at]
        tie = (new == old) | (np.abs(new - old) <= 1e-12)
        more = chip.pixels > self.pixels[at]
        same = chip.pixels == self.pixels[at]
        named = np.array([name < str(s) for s in self.source[at]], bool) if len(at) else np.zeros(0, bool)
        better = np.isfinite(new) & ((new < old - 1e-12) | (tie & more) | (tie & same & named))
        at = at[better]
        for f in self.FIELDS:
            getattr(self, f)[at] = getattr(chip, f)[better]
        self.source[at] = name


class InventoryIndex:
    """Bounds and ellipsoidal areas of the outlines, computed once for all rasters."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.n = len(inventory.geometries)
        self.area = np.array([0.0] + [ellipsoidal_area_km2(g, inventory.crs) if g is not None else 0.0
                                      for g in inventory.geometries])

    def near(self, src) -> np.ndarray:
        """Indices of outlines whose bounding box meets the raster."""
        return self.inventory.near(src.crs, src.bounds)


@dataclass
class AreaChange:
    glaciers: list[dict]
    regional: dict
    size_classes: list[dict]
    options: AreaChangeOptions
    filter_counts: dict = field(default_factory=dict)
    quality_sources: dict = field(default_factory=dict)  # START/END -> how clouds were masked
    warnings: list = field(default_factory=list)


# Relative area change rates glaciers have: regions shrink by up to a few %/yr (the fastest
# inventories, e.g. the Alps 2015-2023 or the tropics, -2 to -4 %/yr) and hardly grow; one
# glacier can lose a fifth of its area a year when it breaks up, not more, and does not
# double. Beyond these the maps, dates or inputs are wrong.
PLAUSIBLE_REGIONAL_PCT_YR = (-6.0, 2.0)
PLAUSIBLE_GLACIER_PCT_YR = (-20.0, 10.0)


def rate_warnings(rows, regional) -> list[str]:
    """What a glaciologist would question before citing the numbers."""
    out = []
    kept = [r for r in rows if r["kept"] and np.isfinite(r["rate_pct_yr"])]
    if len(kept) >= 2 and all(r["area_end_km2"] == r["area_start_km2"] for r in kept):
        out.append(f"all {len(kept)} kept glaciers have exactly the same area at both dates: START and END "
                   "are the same map (or maps of the same scene); give the prediction of the end date as END")
    lo, hi = PLAUSIBLE_REGIONAL_PCT_YR
    rate = regional.get("rate_pct_yr", float("nan"))
    if np.isfinite(rate) and not lo <= rate <= hi:
        out.append(f"regional rate {rate:.2f} %/yr is outside what glacier regions show ({lo:g} to {hi:g} %/yr): "
                   "check the dates (START_YEAR/END_YEAR, the rasters' DATE tags), the threshold and the maps")
    lo, hi = PLAUSIBLE_GLACIER_PCT_YR
    odd = [r for r in kept if not lo <= r["rate_pct_yr"] <= hi]
    if odd:
        ids = ", ".join(str(r["id"]) for r in odd[:10]) + (" ..." if len(odd) > 10 else "")
        out.append(f"{len(odd)} kept glacier(s) change faster than a glacier can ({lo:g} to {hi:g} %/yr): {ids}; "
                   "look at their maps (clouds, snow, shadow) before citing them")
    return out


def source_imagery(prediction) -> str | None:
    """The imagery a prediction was made from (segment_glaciers tags SOURCE_PATH and SOURCE),
    when it carries a quality (SCL) band on the prediction's grid; else None."""
    with rasterio.open(prediction) as src:
        tags, grid = src.tags(), (src.height, src.width, src.transform)
    candidates = [tags.get("SOURCE_PATH"), tags.get("SOURCE") and Path(prediction).parent / tags["SOURCE"]]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if not path.is_file() or path.resolve() == Path(prediction).resolve():
            continue
        try:
            with rasterio.open(path) as q:
                if (q.height, q.width, q.transform) == grid and quality_band(q) is not None:
                    return str(path)
        except (rasterio.RasterioIOError, ValueError):
            continue
    return None


def implied_quality(rasters, given, label, progress: Progress):
    """(quality list or None, how the clouds of `label` are masked): the given rasters, else
    the quality band of the imagery each prediction was made from, so that a cloud over a
    glacier is masked, not measured as retreat, without the user having to know the option."""
    if given:
        return given, f"{label}_QUALITY ({len(given)} raster(s))"
    found = [source_imagery(r) for r in rasters]
    n = sum(q is not None for q in found)
    if n == 0:
        progress.warning(f"{label}_QUALITY not given and the {label} predictions name no imagery with a "
                         f"quality (SCL) band: clouds and shadow are measured as predicted. Give "
                         f"{label}_QUALITY (the imagery the predictions were made from) to mask them.")
        return None, "none: clouds and shadow not masked"
    how = f"the SCL band of the imagery each prediction was made from ({n} of {len(rasters)} raster(s))"
    progress.info(f"{label}_QUALITY not given: masking clouds, shadow and no data with {how}")
    if n < len(rasters):
        missing = [Path(r).name for r, q in zip(rasters, found) if q is None]
        progress.warning(f"{label}: no quality band found for {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}: clouds there are measured as predicted")
    return found, how


def raster_year(src) -> float | None:
    tags = src.tags()
    text = tags.get("DATE") or tags.get("DATETIME", "")[:10] or tags.get("TIFFTAG_DATETIME", "")[:10]
    try:
        return decimal_year(dt.date.fromisoformat(text.replace(":", "-")))
    except ValueError:
        return None


COUNT_ROWS = 256  # rows counted at once: a 10980 px wide block of a float32 map is 11 MB


def count_pixels(prediction, index: InventoryIndex, quality_raster=None, quality="auto",
                 threshold=0.5, parameter="START") -> DateCounts:
    """Outline, masked and predicted pixel counts of the glaciers near one prediction raster
    (only those are transformed and burnt: 5000 per-glacier chips must not cost 5000^2),
    counted in blocks of rows: a whole Sentinel-2 tile costs a block's memory, not the tile's."""
    from rasterio.windows import Window, transform as window_transform
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(rasterio.open(prediction))
        if src.crs is None or src.crs.is_geographic:
            raise ValueError(f"{prediction}: predictions must be in a metric CRS")
        kind = kind_from_blocks(src, parameter)
        near = index.near(src)
        sub = index.inventory.subset(near).to_crs(src.crs.to_wkt())
        pixel_km2 = abs(src.transform.a * src.transform.e) / 1e6
        year = raster_year(src)
        grid = (src.height, src.width, src.transform)
        # Pixel counts are planar in the raster CRS: scale each glacier to the ellipsoid.
        planar = np.array([g.area / 1e6 if g is not None else 0.0 for g in sub.geometries])
        with np.errstate(divide="ignore", invalid="ignore"):
            km2 = np.where(planar > 0, pixel_km2 * index.area[near + 1] / planar, pixel_km2)
        # An outline that runs off the raster: the part beyond the edge was not seen, which is
        # what masked means (else a glacier on a scene edge gets a spurious rate).
        from shapely.geometry import box
        frame = box(*src.bounds)
        beyond = np.array([g is not None and not g.is_empty and not g.within(frame)
                           for g in sub.geometries], bool)
        full_px = planar * 1e6 / abs(src.transform.a * src.transform.e)
        q, band = None, None
        if quality_raster:
            q = stack.enter_context(rasterio.open(quality_raster))
            if (q.height, q.width, q.transform) != grid:
                raise ValueError(f"quality raster {quality_raster} does not share the grid of "
                                 f"{prediction}")
            band = quality_band(q, quality)
            if band is None:
                raise ValueError(f"quality raster {quality_raster} has no SCL/QUALITY band")
            year = year if year is not None else raster_year(q)
        n = len(near) + 1
        pixels, masked_n, predicted = (np.zeros(n, np.int64) for _ in range(3))
        for r0 in range(0, src.height, COUNT_ROWS) if len(near) else ():
            win = Window(0, r0, src.width, min(COUNT_ROWS, src.height - r0))
            local = rasterize_ids(sub, src.crs, window_transform(win, src.transform), (win.height, win.width))
            inside = local > 0
            if not inside.any():
                continue
            glacier, masked = read_prediction(src, threshold, parameter, kind=kind, window=win)
            if q is not None:
                masked |= masked_from_quality(q.read(band, window=win))
            pixels += np.bincount(local[inside], minlength=n)
            masked_n += np.bincount(local[inside & masked], minlength=n)
            predicted += np.bincount(local[inside & ~masked & glacier], minlength=n)
    outside = np.where(beyond, np.maximum(0.0, np.round(full_px) - pixels[1:]), 0.0)
    return DateCounts(pixels[1:], masked_n[1:], predicted[1:], km2,
                      np.full(len(near), np.nan if year is None else year), outside, near + 1,
                      np.nan if year is None else year, pixel_km2)


def chip_names(rasters) -> list[str]:
    """How the table names each raster: its file name, or its full path where two share one."""
    names = [Path(r).name for r in rasters]
    return [n if names.count(n) == 1 else str(Path(r).resolve()) for n, r in zip(names, rasters)]


def count_chip(index: InventoryIndex, opts: AreaChangeOptions, parameter, prediction, quality_raster=None, *,
               progress: Progress) -> DateCounts:
    """count_pixels as a piece of a pool (one chip, one task)."""
    progress.check()
    return count_pixels(prediction, index, quality_raster, opts.quality, opts.threshold, parameter)


def corrected_area(c: DateCounts):
    """(area km2 on the ellipsoid with masked pixels recall-corrected, recall, masked share)."""
    unmasked = c.pixels - c.masked
    total = c.pixels + c.outside
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(unmasked > 0, c.predicted / unmasked, np.nan)
        masked = np.where(total > 0, (c.masked + c.outside) / total, np.nan)
    area = np.where(unmasked > 0, c.predicted * total / np.maximum(unmasked, 1), np.nan)
    return area * c.km2, recall, masked


def _years(counts_years, option, inventory_years, name):
    if option is not None:
        return np.full(counts_years.shape, float(option))
    years = np.where(np.isfinite(counts_years), counts_years, inventory_years)
    if not np.isfinite(years[1:]).all():
        raise ValueError(f"{name}: the year of some predictions is unknown (no DATE tag in the "
                         f"raster, no inventory date): set {name}")
    return years


def area_change(inventory: Inventory, start, end, start_quality=None, end_quality=None,
                options: AreaChangeOptions | None = None, inventory_years=None,
                start_ensemble=None, end_ensemble=None,
                progress: Progress | None = None, pool=None) -> AreaChange:
    """The paper's per-glacier and regional area change with its filters.

    start/end: lists of prediction rasters (one mosaic, or per-glacier chips); quality lists
    align with them (or are None); ensembles: lists of lists of rasters (members). Each
    raster is counted as a piece of `pool` (a task per chip on a cluster); the counts are
    merged here in input order, so the result does not depend on where they ran."""
    from ..cluster import LocalPool
    opts = options or AreaChangeOptions()
    progress = progress or Progress()
    pool = pool or LocalPool()
    n = len(inventory.geometries)
    index = InventoryIndex(inventory)
    if not start or not end:
        raise ValueError("START and END need at least one prediction raster each")
    if (start_ensemble or end_ensemble) and (len(start) > 1 or len(end) > 1):
        raise ValueError("START_ENSEMBLE/END_ENSEMBLE take one raster per member covering the "
                         "region (a mosaic), so they go with one START and one END raster, not "
                         "with per-glacier chips: mosaic the chips first, or leave the ensembles out")

    for label, rasters in (("START", start), ("END", end)):
        extents = []
        for r in rasters:
            with rasterio.open(r) as src:
                extents.append((src.crs, src.bounds))
        require_overlap(inventory, extents, label)

    def measure(rasters, qualities, label, part=None):
        qualities = qualities or [None] * len(rasters)
        if len(qualities) != len(rasters):
            raise ValueError(f"{label}_QUALITY must give one raster per {label} raster")
        best = DateCounts.empty(n + 1)
        chips = pool.run(count_chip, [(str(Path(r).resolve()), str(Path(q).resolve()) if q else None)
                                      for r, q in zip(rasters, qualities)],
                         part or progress.sub(progress.fraction, progress.fraction), common=(index, opts, label))
        names = chip_names(rasters)
        first = min(range(len(chips)), key=lambda j: names[j])  # by name, not by listing order:
        best.year[:], best.km2[:] = chips[first].first_year, chips[first].pixel_km2  # glaciers no raster shows
        for name, chip in zip(names, chips):
            best.keep_best(chip, name)
        best.source[best.source == "\uffff"] = ""
        return best

    start_quality, start_how = implied_quality(start, start_quality, "START", progress)
    end_quality, end_how = implied_quality(end, end_quality, "END", progress)
    progress.update(0.05, f"measuring {len(start)} start and {len(end)} end prediction raster(s)")
    c0 = measure(start, start_quality, "START", progress.sub(0.05, 0.2))
    c1 = measure(end, end_quality, "END", progress.sub(0.2, 0.35))
    inv_years = np.concatenate([[np.nan], np.asarray(inventory_years if inventory_years is not None
                                                     else [np.nan] * n, float)])
    y0 = _years(c0.year, opts.start_year, inv_years, "START_YEAR")
    y1 = _years(c1.year, opts.end_year, np.full(n + 1, np.nan), "END_YEAR")
    if np.any((y1 - y0)[1:][c0.pixels[1:] > 0] <= 0):
        raise ValueError("END_YEAR must be after START_YEAR for every glacier")

    inv_area = index.area
    a0, recall0, masked0 = corrected_area(c0)
    a1, recall1, masked1 = corrected_area(c1)
    dt_years = y1 - y0

    # Uncertainty of each area: the ensemble spread (model variance, DL4GAM) and, independent
    # of it, the buffer method of glacier inventories (Granshaw & Fountain 2006; Paul et al.
    # 2013): +- OUTLINE_UNCERTAINTY_PX pixels along the outline. Seeds of one architecture
    # trained on the same data agree with each other far better than with the truth, so the
    # spread alone gives intervals that are too narrow.
    perimeter_km = np.array([0.0] + [_perimeter_km(g, inventory.crs) for g in inventory.geometries])
    buf0 = perimeter_km * np.sqrt(c0.km2) * opts.outline_uncertainty_px
    buf1 = perimeter_km * np.sqrt(c1.km2) * opts.outline_uncertainty_px
    sig0, sig1 = buf0, buf1
    if start_ensemble and end_ensemble:
        progress.update(0.4, f"ensemble: {len(start_ensemble)} + {len(end_ensemble)} members")
        sig0 = np.sqrt(_ensemble_std(start_ensemble, start_quality, measure) ** 2 + buf0 ** 2)
        sig1 = np.sqrt(_ensemble_std(end_ensemble, end_quality, measure) ** 2 + buf1 ** 2)

    rows, reasons = [], {}
    for k in range(1, n + 1):
        rate = (a1[k] - a0[k]) / dt_years[k] if np.isfinite(a0[k]) and np.isfinite(a1[k]) else np.nan
        rate_pct = rate / a0[k] * 100 if np.isfinite(rate) and a0[k] > 0 else np.nan
        row = dict(id=inventory.ids[k - 1], area_inventory_km2=inv_area[k],
                   area_start_km2=a0[k], area_end_km2=a1[k], recall=recall0[k],
                   recall_end=recall1[k], masked_start=masked0[k], masked_end=masked1[k],
                   year_start=y0[k], year_end=y1[k], rate_km2_yr=rate, rate_pct_yr=rate_pct,
                   chip_start=c0.source[k], chip_end=c1.source[k])
        if sig0 is not None and (start_ensemble or opts.outline_uncertainty_px > 0):
            s_rate = np.sqrt(sig0[k] ** 2 + sig1[k] ** 2) / dt_years[k]
            row.update(area_start_sigma_km2=sig0[k], area_end_sigma_km2=sig1[k],
                       rate_sigma_km2_yr=s_rate,
                       rate_sigma_pct_yr=s_rate / a0[k] * 100 if a0[k] > 0 else np.nan)
            row["snr"] = abs(rate) / s_rate if s_rate > 0 else np.inf
        reason = _filter_reason(row, c0.pixels[k], opts)
        row["kept"], row["filter_reason"] = reason == "", reason
        rows.append(row)
    _trim(rows, opts.trim_percent)
    for r in rows:
        reasons[r["filter_reason"] or "kept"] = reasons.get(r["filter_reason"] or "kept", 0) + 1
    regional = _regional(rows)
    warnings_ = rate_warnings(rows, regional)
    for w in warnings_:
        progress.warning(w)
    progress.update(1.0, f"{regional['n_kept']} of {n} glaciers kept ({regional['area_share_kept']:.1%} "
                         f"of the inventory area); regional rate {regional['rate_pct_yr']:.3f} %/yr")
    return AreaChange(rows, regional, size_class_table(rows), opts, reasons,
                      {"START": start_how, "END": end_how}, warnings_)


def _perimeter_km(geom, crs) -> float:
    """Geodesic perimeter of an outline (holes included)."""
    if geom is None or geom.is_empty:
        return 0.0
    from ..geodesy import WGS84, to_lonlat
    return WGS84.geometry_area_perimeter(to_lonlat(geom, crs))[1] / 1000.0


def _ensemble_std(members, qualities, measure):
    """Per-glacier standard deviation of the (corrected) area across ensemble members."""
    areas = np.stack([corrected_area(measure(rasters, qualities, "ENSEMBLE"))[0] for rasters in members])
    if len(areas) < 2:
        return np.zeros(areas.shape[1])
    with warnings.catch_warnings():  # glaciers no member covers: NaN, as they should be
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(areas, axis=0, ddof=1)


def _filter_reason(row, pixels, opts) -> str:
    if pixels == 0:
        return "not covered by the predictions"
    if not np.isfinite(row["masked_start"]) or row["masked_start"] > opts.max_masked:
        return f"masked_start > {opts.max_masked:g}"
    if not np.isfinite(row["masked_end"]) or row["masked_end"] > opts.max_masked:
        return f"masked_end > {opts.max_masked:g}"
    if not row["area_start_km2"] > 0:
        return "no glacier predicted at the start date"
    if not np.isfinite(row["rate_pct_yr"]):
        return "no rate (nothing unmasked at one of the dates)"
    if not np.isfinite(row["recall"]) or row["recall"] < opts.min_recall:
        return f"recall < {opts.min_recall:g}"
    if opts.min_snr > 0 and row.get("snr", np.inf) < opts.min_snr:
        return f"snr < {opts.min_snr:g}"
    return ""


def _trim(rows, percent):
    """Drop the `percent` % most extreme rates of the glaciers still kept, half from each
    tail; an odd one out comes from the tail that lies farther from the median."""
    kept = [r for r in rows if r["kept"]]
    n_drop = int(np.floor(len(kept) * percent / 100.0 + 0.5))  # half up, not to even
    if percent <= 0 or n_drop == 0:
        return
    order = sorted(kept, key=lambda r: r["rate_pct_yr"])
    low = n_drop // 2
    if n_drop % 2:
        median = float(np.median([r["rate_pct_yr"] for r in order]))
        low_far = median - order[low]["rate_pct_yr"] > order[len(order) - 1 - (n_drop - low - 1)]["rate_pct_yr"] - median
        low += int(low_far)
    high = n_drop - low
    for r in order[:low] + order[len(order) - high:]:
        r["kept"], r["filter_reason"] = False, f"among the {percent:g} % most extreme rates"


def _regional(rows) -> dict:
    kept = [r for r in rows if r["kept"]]
    a0 = sum(r["area_start_km2"] for r in kept)
    a1 = sum(r["area_end_km2"] for r in kept)
    rate_km2 = sum(r["rate_km2_yr"] for r in kept)
    inv_total = sum(r["area_inventory_km2"] for r in rows)
    out = dict(n_glaciers=len(rows), n_kept=len(kept), area_inventory_km2=inv_total,
               area_inventory_kept_km2=sum(r["area_inventory_km2"] for r in kept),
               area_start_km2=a0, area_end_km2=a1, rate_km2_yr=rate_km2,
               rate_pct_yr=rate_km2 / a0 * 100 if a0 > 0 else float("nan"))
    out["area_share_kept"] = out["area_inventory_kept_km2"] / inv_total if inv_total else float("nan")
    if kept and "rate_sigma_km2_yr" in kept[0]:
        # Independent glaciers: variances add.
        s = float(np.sqrt(sum(r["rate_sigma_km2_yr"] ** 2 for r in kept)))
        out.update(rate_sigma_km2_yr=s, rate_sigma_pct_yr=s / a0 * 100 if a0 > 0 else float("nan"))
    return out


def size_class_table(rows) -> list[dict]:
    """Paul et al. (2020) classes by inventory area: counts, area shares, rate distribution."""
    total = sum(r["area_inventory_km2"] for r in rows) or float("nan")
    table = []
    for lo, hi in SIZE_CLASSES:
        members = [r for r in rows if lo <= r["area_inventory_km2"] < hi]
        kept = [r["rate_pct_yr"] for r in members if r["kept"]]
        label = f"[{lo:g}, {hi:g})" if np.isfinite(hi) else f">= {lo:g}"
        q = np.percentile(kept, [25, 50, 75]) if kept else [np.nan] * 3
        table.append(dict(size_class=label, n=len(members), n_kept=len(kept),
                          area_share=sum(r["area_inventory_km2"] for r in members) / total,
                          rate_pct_yr_mean=float(np.mean(kept)) if kept else float("nan"),
                          rate_pct_yr_p25=float(q[0]), rate_pct_yr_median=float(q[1]),
                          rate_pct_yr_p75=float(q[2])))
    small = [r for r in rows if r["area_inventory_km2"] < SIZE_CLASSES[0][0]]
    if small:
        kept = [r["rate_pct_yr"] for r in small if r["kept"]]
        q = np.percentile(kept, [25, 50, 75]) if kept else [np.nan] * 3
        table.insert(0, dict(size_class="< 0.1", n=len(small), n_kept=len(kept),
                             area_share=sum(r["area_inventory_km2"] for r in small) / total,
                             rate_pct_yr_mean=float(np.mean(kept)) if kept else float("nan"),
                             rate_pct_yr_p25=float(q[0]), rate_pct_yr_median=float(q[1]),
                             rate_pct_yr_p75=float(q[2])))
    return table
