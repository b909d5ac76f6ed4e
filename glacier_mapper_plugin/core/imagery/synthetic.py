"""A deterministic synthetic glacier region: the embedded default data for the demo and tests.

Terrain first, glaciers from the terrain, imagery from surfaces: peaks and ridges carry
accumulation areas whose tongues follow steepest descent down the valleys; glaciers retreat
between the two dates by a known per-glacier rate (from the snout upwards, as real glaciers
do), which is written to the inventory as ground truth. Imagery is Sentinel-2 L2A-like
(uint16, processing-baseline offset, 0 = no data) with snow, clean ice, debris, rock,
vegetation, water, clouds, their shadows, topographic shading and a no-data strip, and an
SCL band consistent with it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio import features
from rasterio.transform import from_origin
from scipy import ndimage
from shapely.geometry import shape
from shapely.ops import unary_union

from . import sentinel2 as s2
from ..geodesy import ellipsoidal_area_km2
from ..io import GTIFF_PROFILE, atomic_output
from ..progress import Progress
from ..vector import VectorLayer, write_gpkg

# Surface reflectance of the 5 model bands (B2, B3, B4, B8, B12), typical values from
# spectral libraries for late-summer alpine scenes.
SPECTRA = {
    "snow": (0.88, 0.86, 0.83, 0.74, 0.06),
    "ice": (0.52, 0.47, 0.41, 0.30, 0.025),
    "debris": (0.11, 0.13, 0.15, 0.21, 0.19),
    "rock": (0.09, 0.12, 0.15, 0.23, 0.26),
    "vegetation": (0.035, 0.065, 0.045, 0.34, 0.11),
    "water": (0.07, 0.08, 0.05, 0.02, 0.01),
    "cloud": (0.78, 0.77, 0.77, 0.80, 0.42),
}
SURFACES = ("snow", "ice", "debris", "rock", "vegetation", "water")
SCL_OF_SURFACE = {"snow": 11, "ice": 11, "debris": 5, "rock": 5, "vegetation": 4, "water": 6}
CRS = "EPSG:32632"             # UTM 32N, the Alps
ORIGIN = (630000.0, 5200000.0)  # upper-left corner, Oetztal-like
PIXEL = 10.0
# Archive scenes before 2022 (baseline 02.xx) carry no DN offset, recent ones (>= 04.00) do:
# the two dates differ on purpose, as they do in real inventories.
PROCESSING_BASELINES = {"start": "02.14", "end": "05.09"}
GLACIER_NAMES = ("Alpeiner", "Blaueis", "Eiskar", "Firnkar", "Gaiskar", "Hochjoch", "Kessel",
                 "Langtaler", "Mittelberg", "Rotmoos", "Schalf", "Taschach", "Weisssee",
                 "Zirmkar", "Gepatsch", "Murkar", "Niederjoch", "Sexegerten", "Vernagl",
                 "Hangerer", "Diem", "Spiegel", "Marzell", "Latsch")


@dataclass
class SyntheticRegion:
    """Paths of what `make_region` wrote."""
    folder: Path
    imagery_start: Path
    imagery_end: Path
    dem: Path
    inventory: Path
    truth_start: Path
    truth_end: Path
    start_date: dt.date
    end_date: dt.date
    n_glaciers: int
    true_regional_rate_pct_yr: float


def smooth_noise(rng: np.random.Generator, shape, beta: float = 3.0) -> np.ndarray:
    """Fractal (1/f^beta) noise with zero mean and unit std, made with an FFT filter."""
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spectrum = np.fft.rfft2(white) / f ** (beta / 2)
    spectrum[0, 0] = 0
    out = np.fft.irfft2(spectrum, s=shape)
    return (out - out.mean()) / (out.std() + 1e-12)


def _place_peaks(rng, n, size_px, min_dist):
    margin = 0.12 * size_px
    peaks = np.zeros((0, 2))
    for _ in range(20000):
        p = rng.uniform(margin, size_px - margin, size=2)
        if not len(peaks) or np.hypot(*(peaks - p).T).min() >= min_dist:
            peaks = np.vstack([peaks, p])
            if len(peaks) == n:
                break
    return peaks


def _around(centre, half: int, shape):
    """Slices of the window of half-size `half` around (row, col), inside `shape`."""
    r, c = int(centre[0]), int(centre[1])
    return (slice(max(r - half, 0), min(r + half + 1, shape[0])),
            slice(max(c - half, 0), min(c + half + 1, shape[1])))


def make_dem(rng, size_px: int, n_peaks: int):
    """Massifs with ridges and valleys: Gaussian-like peaks plus ridged fractal noise. Each
    massif is added within 6 radii of its peak (beyond, exp(-6^1.6) < 1e-7): the cost is
    linear in the area, not area x peaks."""
    min_dist = size_px / np.sqrt(n_peaks) * 0.75
    peaks = _place_peaks(rng, n_peaks, size_px, min_dist)
    massifs = np.zeros((size_px, size_px))
    for (py, px) in peaks:
        height = rng.uniform(0.75, 1.0)
        radius = min_dist * rng.uniform(0.75, 1.0)
        win = _around((py, px), int(6 * radius) + 1, massifs.shape)
        yy, xx = np.mgrid[win]
        massifs[win] += height * np.exp(-(np.hypot(yy - py, xx - px) / radius) ** 1.6)
    # Valley floors near 1750 m, summits near 3500 m, as in the Oetztal Alps.
    z = 1750.0 + 1500.0 * massifs / massifs.max()
    ridged = 1.0 - np.abs(smooth_noise(rng, z.shape, beta=3.8))
    z += 260.0 * ridged + 12.0 * smooth_noise(rng, z.shape, beta=3.0)
    return z.astype(np.float32), peaks, min_dist


def slope_aspect(dem: np.ndarray, pixel: float):
    """Slope (deg) and aspect (deg clockwise from north) with north up (row 0 = north)."""
    dzdy, dzdx = np.gradient(dem.astype(np.float64), pixel)
    dzdn = -dzdy  # rows grow southwards
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdn)))
    aspect = (np.degrees(np.arctan2(-dzdx, -dzdn)) + 360.0) % 360.0  # downslope direction
    return slope, aspect


def illumination(slope, aspect, sun_zenith, sun_azimuth):
    """cos of the local solar incidence angle (negative = self-shadowed)."""
    s, a = np.radians(slope), np.radians(aspect)
    z, az = np.radians(sun_zenith), np.radians(sun_azimuth)
    return np.cos(z) * np.cos(s) + np.sin(z) * np.sin(s) * np.cos(az - a)


_D8 = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _descent_path(dem, start, n_steps):
    """Steepest-descent (D8) path from `start`: where a glacier tongue flows."""
    path = [start]
    r, c = start
    for _ in range(n_steps):
        best, best_z = None, dem[r, c]
        for dr, dc in _D8:
            rr, cc = r + dr, c + dc
            if 0 <= rr < dem.shape[0] and 0 <= cc < dem.shape[1]:
                drop = (dem[r, c] - dem[rr, cc]) / np.hypot(dr, dc)
                if dem[rr, cc] < best_z and (best is None or drop > best[2]):
                    best = (rr, cc, drop)
        if best is None:
            break  # a pit: the tongue ends here
        r, c = best[0], best[1]
        best_z = dem[r, c]
        path.append((r, c))
    return path


def _tongue_mask(shape_, path, w_start, w_end):
    """Pixels within a width tapering from w_start to w_end (pixels) of the path."""
    mask = np.zeros(shape_, bool)
    n = len(path)
    for i, (r, c) in enumerate(path):
        w = w_start + (w_end - w_start) * i / max(n - 1, 1)
        r0, r1 = int(max(r - w - 1, 0)), int(min(r + w + 2, shape_[0]))
        c0, c1 = int(max(c - w - 1, 0)), int(min(c + w + 2, shape_[1]))
        yy, xx = np.mgrid[r0:r1, c0:c1]
        mask[r0:r1, c0:c1] |= (yy - r) ** 2 + (xx - c) ** 2 <= w * w
    return mask


def _largest_component(mask):
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def make_glaciers(rng, dem, peaks, min_dist, n_glaciers, pixel):
    """Label image (0 = no glacier, k = glacier k) built from the terrain around peaks. Each
    glacier is built in a window around its peak that holds its largest possible reach and
    tongue, so the cost is linear in the number of glaciers."""
    labels = np.zeros(dem.shape, np.int32)
    disk = ndimage.generate_binary_structure(2, 1)
    half = int(4.0 * 0.55 * 1.6 * min_dist) + 12  # reach <= 0.88 min_dist, tongue <= 2.9 reach
    order = np.argsort([-dem[int(p[0]), int(p[1])] for p in peaks])
    info = []
    for k in order:
        if len(info) == n_glaciers:
            break
        py, px = int(peaks[k][0]), int(peaks[k][1])
        r0, r1 = max(py - 5, 0), py + 6
        c0, c1 = max(px - 5, 0), px + 6
        sub = dem[r0:r1, c0:c1]
        iy, ix = np.unravel_index(np.argmax(sub), sub.shape)
        py, px = r0 + iy, c0 + ix
        top = float(dem[py, px])
        win = _around((py, px), half, dem.shape)
        z = dem[win]
        wy, wx = py - win[0].start, px - win[1].start
        yy, xx = np.mgrid[0:z.shape[0], 0:z.shape[1]]
        # A ragged reach, not a circle: cirques are irregular.
        reach = 0.55 * min_dist * (1.0 + 0.3 * np.clip(smooth_noise(rng, z.shape, 3.5), -2, 2))
        near = np.hypot(yy - wy, xx - wx) < reach
        accumulation = (z > top - rng.uniform(280, 480)) & near
        lab, _ = ndimage.label(accumulation)
        accumulation = lab == lab[wy, wx]
        area_px = int(accumulation.sum())
        # The tongue leaves the accumulation area at its lowest point and follows the valley.
        zz = np.where(accumulation, z, np.inf)
        outlet = np.unravel_index(np.argmin(zz), z.shape)
        length_px = int(rng.uniform(0.9, 1.6) * np.sqrt(area_px))
        path = _descent_path(z, outlet, length_px)
        w0 = max(3.0, 0.2 * np.sqrt(area_px))
        tongue = _tongue_mask(z.shape, path, w0, max(2.5, 0.45 * w0))
        glacier = accumulation | tongue
        glacier = ndimage.binary_closing(glacier, disk, iterations=2)
        glacier = ndimage.binary_opening(glacier, disk, iterations=1)
        glacier = ndimage.binary_fill_holes(glacier)
        # Keep a gap to glaciers already placed, so outlines never touch (the window's own
        # labels plus 3 pixels around it decide).
        outer = _around((py, px), half + 3, dem.shape)
        taken = ndimage.binary_dilation(labels[outer] > 0, disk, iterations=3)
        glacier &= ~taken[win[0].start - outer[0].start:win[0].stop - outer[0].start,
                          win[1].start - outer[1].start:win[1].stop - outer[1].start]
        glacier = _largest_component(glacier)
        if glacier.sum() * pixel * pixel < 0.03e6:
            continue
        gid = len(info) + 1
        labels[win][glacier] = gid
        info.append({"peak": (py, px)})
    return labels, info


def retreat(labels, dem, rates_pct_yr, years):
    """Remove each glacier's lowest pixels until its area has changed by rate * years."""
    end = labels.copy()
    boxes = ndimage.find_objects(labels)
    for gid, rate in rates_pct_yr.items():
        box = boxes[gid - 1]
        mine = labels[box] == gid
        z = dem[box][mine]
        keep = max(0, int(round(z.size * (1.0 + rate / 100.0 * years))))
        gone = np.zeros(z.size, bool)
        gone[np.argsort(z, kind="stable")[: z.size - keep]] = True
        window = end[box]
        window[mine] = np.where(gone, 0, window[mine])
    return end


def _cloud_field(rng, shape_, centre, radius_px, noise):
    yy, xx = np.mgrid[0:shape_[0], 0:shape_[1]]
    d = np.hypot(yy - centre[0], (xx - centre[1]) * rng.uniform(0.6, 1.0)) / radius_px
    return np.clip((1.0 - d + 0.35 * noise) * 2.5, 0.0, 1.0)


def render_scene(rng, dem, labels, debris, sun, snowline, lakes, nodata_strip, cloud_over,
                 pixel):
    """Reflectance (5, H, W) float32 (NaN = no data) and the matching SCL (H, W) uint8."""
    h, w = dem.shape
    slope, aspect = slope_aspect(dem, pixel)
    cos_i = illumination(slope, aspect, *sun)
    # Direct light on a tilted surface plus a diffuse share; self-shadow gets diffuse only.
    shading = np.clip(0.25 + 0.75 * np.maximum(cos_i, 0.0) / np.cos(np.radians(sun[0])),
                      0.2, 1.6).astype(np.float32)
    surface = np.full((h, w), SURFACES.index("rock"), np.uint8)
    treeline = 2250.0 + 90.0 * smooth_noise(rng, dem.shape, 2.5)
    surface[(dem < treeline) & (slope < 38)] = SURFACES.index("vegetation")
    # Seasonal snow patches off the glaciers on high shaded slopes: a classic confuser.
    snow_patch = (dem > np.quantile(dem, 0.9) + 60 * smooth_noise(rng, dem.shape, 2.5)) & (cos_i < 0.55)
    surface[snow_patch] = SURFACES.index("snow")
    on_ice = labels > 0
    snow = on_ice & (dem > snowline + 35.0 * smooth_noise(rng, dem.shape, 3.0))
    surface[on_ice] = SURFACES.index("ice")
    surface[snow] = SURFACES.index("snow")
    surface[on_ice & debris] = SURFACES.index("debris")
    surface[lakes] = SURFACES.index("water")

    spectra = np.array([SPECTRA[s] for s in SURFACES], np.float32)  # (6 surfaces, 5 bands)
    refl = spectra[surface].transpose(2, 0, 1) * shading[None]
    refl *= 1.0 + 0.04 * rng.standard_normal(refl.shape).astype(np.float32)
    refl[:, surface == SURFACES.index("water")] = spectra[SURFACES.index("water")][:, None]
    scl = np.vectorize(lambda i: SCL_OF_SURFACE[SURFACES[i]], otypes=[np.uint8])(np.arange(6))[surface]
    scl[(cos_i < 0.05) & (scl != 11)] = 2  # dark area pixels

    # Clouds and their shadows, cast away from the sun.
    alpha = np.zeros((h, w), np.float32)
    for centre in cloud_over:  # each cloud in its own window (its field ends within ~4 radii)
        radius = rng.uniform(18, 35)
        win = _around(centre, int(6 * radius), (h, w))
        shape_ = (win[0].stop - win[0].start, win[1].stop - win[1].start)
        alpha[win] = np.maximum(alpha[win], _cloud_field(
            rng, shape_, (centre[0] - win[0].start, centre[1] - win[1].start), radius,
            smooth_noise(rng, shape_, 2.8)))
    shift_px = 30.0
    az = np.radians(sun[1])
    dy, dx = int(round(shift_px * np.cos(az))), int(round(-shift_px * np.sin(az)))
    shadow = np.roll(alpha, (dy, dx), axis=(0, 1)) > 0.5
    refl[:, shadow] *= 0.3
    scl[shadow] = 3
    cloud = np.array(SPECTRA["cloud"], np.float32)[:, None, None]
    refl = (1 - alpha[None]) * refl + alpha[None] * cloud
    scl[alpha > 0.25] = 8
    scl[alpha > 0.6] = 9

    refl[:, nodata_strip] = np.nan
    scl[nodata_strip] = 0
    return refl.astype(np.float32), scl


def _write_geotiff(path, arrays, transform, dtype, nodata, descriptions, tags, band_tags=None,
                   scales=None, offsets=None):
    profile = dict(GTIFF_PROFILE, height=arrays.shape[1], width=arrays.shape[2],
                   count=arrays.shape[0], dtype=dtype, crs=CRS, transform=transform,
                   nodata=nodata)
    with atomic_output(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arrays.astype(dtype))
            dst.descriptions = tuple(descriptions)
            dst.update_tags(**tags)
            for i, btags in enumerate(band_tags or [], start=1):
                dst.update_tags(i, **btags)
            if scales is not None:
                dst.scales = scales
                dst.offsets = offsets
    return Path(path)


def _polygons(labels, transform):
    """Glacier id -> shapely (Multi)Polygon, exactly following the pixel edges."""
    parts: dict[int, list] = {}
    for geom, value in features.shapes(labels.astype(np.int32), mask=labels > 0,
                                       transform=transform, connectivity=4):
        parts.setdefault(int(value), []).append(shape(geom))
    return {gid: unary_union(p) for gid, p in parts.items()}


def make_region(folder, seed: int = 42, size_km: float = 4.0, n_glaciers: int = 8,
                start_year: int = 2015, end_year: int = 2023,
                progress: Progress | None = None, origin=ORIGIN,
                clouds: bool = True) -> SyntheticRegion:
    """Write DEM, two L2A-like scenes, truth masks and the inventory into `folder`.
    `origin` moves the region (UTM 32N coordinates); `clouds=False` leaves the sky clear."""
    progress = progress or Progress()
    if size_km <= 0.5 or size_km > 60:
        raise ValueError(f"SIZE_KM must be between 0.5 and 60 km, got {size_km}")
    if n_glaciers < 1:
        raise ValueError(f"N_GLACIERS must be at least 1, got {n_glaciers}")
    if end_year <= start_year:
        raise ValueError(f"END_YEAR ({end_year}) must be after START_YEAR ({start_year})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    size_px = int(round(size_km * 1000 / PIXEL))
    if size_px ** 2 / max(n_glaciers, 1) < 1500:
        raise ValueError(f"{n_glaciers} glaciers do not fit in {size_km} km: lower N_GLACIERS "
                         "or raise SIZE_KM")
    transform = from_origin(origin[0], origin[1], PIXEL, PIXEL)
    years = end_year - start_year
    start_date, end_date = dt.date(start_year, 8, 28), dt.date(end_year, 9, 2)

    progress.update(0.02, f"terrain: {size_px} x {size_px} pixels at {PIXEL:g} m")
    dem, peaks, min_dist = make_dem(rng, size_px, max(n_glaciers + 2, int(n_glaciers * 1.5)))
    progress.update(0.15, "glaciers from the terrain")
    labels0, info = make_glaciers(rng, dem, peaks, min_dist, n_glaciers, PIXEL)
    n = len(info)
    if n == 0:
        raise ValueError("no glacier could be placed: raise SIZE_KM")
    if n < n_glaciers:
        progress.warning(f"only {n} of {n_glaciers} glaciers fit the terrain of seed {seed}")
    rates = {g: float(rng.uniform(-3.5, -0.5)) for g in range(1, n + 1)}
    has_debris = {g: bool(rng.random() < 0.4) for g in range(1, n + 1)}
    has_debris[1 + int(rng.integers(n))] = True  # at least one debris-covered tongue
    labels1 = retreat(labels0, dem, rates, years)

    # Debris on the lowest part of the tongue; snowline in the upper half of each glacier.
    debris = np.zeros(dem.shape, bool)
    snowline = np.full(dem.shape, np.inf, np.float32)
    boxes = ndimage.find_objects(labels0)
    for g in range(1, n + 1):
        box = boxes[g - 1]
        mine = labels0[box] == g
        z = dem[box][mine]
        zmin, zmax = float(z.min()), float(z.max())
        snowline[box][mine] = zmin + rng.uniform(0.45, 0.65) * (zmax - zmin)
        if has_debris[g]:
            debris[box] |= mine & (dem[box] < zmin + rng.uniform(0.15, 0.3) * (zmax - zmin))
    debris &= smooth_noise(rng, dem.shape, 2.5) > -0.8

    # Lakes: one in the valley floor, proglacial lakes dammed below the snouts of some
    # glaciers already at the start, and a new one where the fastest-retreating glacier left
    # its snout (water next to ice is a classic confuser, so the model must see it).
    yy, xx = np.mgrid[0:size_px, 0:size_px]
    lakes0 = np.zeros(dem.shape, bool)
    low = np.argwhere((labels0 == 0) & (dem < np.quantile(dem, 0.08)))
    if len(low):
        cy, cx = low[rng.integers(len(low))]
        lakes0 = (((yy - cy) / 6.0) ** 2 + ((xx - cx) / 9.0) ** 2 <= 1) & (labels0 == 0)
    g_fast = min(rates, key=rates.get)
    for g in range(1, n + 1):
        if g == g_fast or rng.random() > 0.5:
            continue
        box = boxes[g - 1]
        rows, cols = np.nonzero(labels0[box] == g)
        rows, cols = rows + box[0].start, cols + box[1].start
        snout = int(np.argmin(dem[rows, cols]))
        path = _descent_path(dem, (rows[snout], cols[snout]), 25)
        # Ice-contact or nearly: the lake's shore reaches (or almost reaches) the snout.
        cy, cx = path[min(len(path) - 1, int(rng.integers(3, 9)))]
        r = rng.uniform(4, 8)
        win = _around((cy, cx), int(r) + 1, dem.shape)
        wy, wx = np.mgrid[win]
        lakes0[win] |= ((wy - cy) ** 2 + (wx - cx) ** 2 <= r * r) & (labels0[win] == 0)
    freed = (labels0 == g_fast) & (labels1 == 0)
    freed_z = dem[freed]
    lakes1 = lakes0 | (freed & (dem < np.quantile(freed_z, 0.35))) if freed_z.size else lakes0

    written = {}
    glacier_peaks = [inf["peak"] for inf in info]
    for which, date, labels, lakes, strip_side in (("start", start_date, labels0, lakes0, 0),
                                                    ("end", end_date, labels1, lakes1, 1)):
        progress.update(0.3 if which == "start" else 0.6, f"Sentinel-2 L2A-like scene {date}")
        sun = (rng.uniform(40, 46), rng.uniform(150, 160))
        # A few clouds over some glaciers; each date clouds different ones.
        n_clouds = max(1, round(n / 4))
        cloud_over = [glacier_peaks[i] for i in rng.choice(n, size=min(n_clouds, n), replace=False)]
        cloud_over = [(p[0] + rng.uniform(-15, 15), p[1] + rng.uniform(-15, 15)) for p in cloud_over]
        if not clouds:  # a cloud-free variant (tests that place their own clouds)
            cloud_over = []
        yy, xx = np.mgrid[0:size_px, 0:size_px]
        # A swath edge: a diagonal no-data strip in one corner.
        strip = (xx + yy > 1.85 * size_px) if strip_side == 0 else (xx - yy > 0.85 * size_px)
        refl, scl = render_scene(rng, dem, labels, debris & (labels > 0), sun, snowline, lakes,
                                 strip, cloud_over, PIXEL)
        baseline = PROCESSING_BASELINES[which]
        offset = s2.boa_offset(baseline)
        dn = s2.to_dn(refl, baseline)
        stack = np.concatenate([dn, scl[None].astype(np.uint16)])
        tags = dict(DATETIME=f"{date.isoformat()}T10:20:31Z", DATE=date.isoformat(),
                    PROCESSING_BASELINE=baseline, BOA_ADD_OFFSET=str(offset), BOA_QUANTIFICATION_VALUE=str(s2.QUANTIFICATION),
                    SPACECRAFT_NAME="Sentinel-2B (synthetic)", PRODUCT_TYPE="S2MSI2A",
                    SUN_ZENITH_ANGLE=f"{sun[0]:.2f}", SUN_AZIMUTH_ANGLE=f"{sun[1]:.2f}",
                    SYNTHETIC_SEED=str(seed), SCENE_ID=f"S2B_MSIL2A_SYNTH_{date:%Y%m%d}_{seed}")
        band_tags = [dict(BAND=b, UNIT=f"reflectance*10000{-offset:+d}") for b in s2.BANDS]
        band_tags.append(dict(BAND="SCL", CLASSES=",".join(f"{k}:{v}" for k, v in s2.SCL.items())))
        path = folder / f"S2_L2A_{date:%Y%m%d}.tif"
        _write_geotiff(path, stack, transform, "uint16", s2.NODATA, list(s2.BANDS) + ["SCL"], tags,
                       band_tags, scales=[1 / s2.QUANTIFICATION] * 5 + [1.0],
                       offsets=[offset / s2.QUANTIFICATION] * 5 + [0.0])
        written[f"imagery_{which}"] = path
        truth = folder / f"glacier_ids_{date.year}.tif"
        _write_geotiff(truth, labels[None], transform, "uint16", None, ["glacier_id"],
                       dict(DATE=date.isoformat(), DESCRIPTION="true glacier id per pixel (0 = none)"))
        written[f"truth_{which}"] = truth

    progress.update(0.85, "DEM and inventory")
    written["dem"] = _write_geotiff(folder / "dem.tif", dem[None], transform, "float32", -9999.0,
                                    ["DEM"], dict(UNITS="m", DESCRIPTION="synthetic elevation"))

    geoms0, geoms1 = _polygons(labels0, transform), _polygons(labels1, transform)
    names = rng.permutation(GLACIER_NAMES)
    records, end_records, end_geoms, inv_geoms = [], [], [], []
    a0_total = a1_total = 0.0
    for g in range(1, n + 1):
        a0 = ellipsoidal_area_km2(geoms0[g], CRS)
        a1 = ellipsoidal_area_km2(geoms1.get(g), CRS) if g in geoms1 else 0.0
        a0_total, a1_total = a0_total + a0, a1_total + a1
        gid = f"G{g:03d}"
        name = f"{names[(g - 1) % len(names)]}ferner" + ("" if g <= len(names) else f" {g}")
        records.append(dict(id=gid, name=name, area_km2=round(a0, 6), date=start_date,
                            year=start_year, debris=has_debris[g],
                            true_area_end_km2=round(a1, 6),
                            true_rate_km2_yr=(a1 - a0) / years,
                            true_rate_pct_yr=(a1 - a0) / a0 / years * 100.0))
        inv_geoms.append(geoms0[g])
        end_records.append(dict(id=gid, name=name, area_km2=round(a1, 6), date=end_date,
                                year=end_year))
        end_geoms.append(geoms1.get(g))
    inventory = write_gpkg(folder / "inventory.gpkg", [
        VectorLayer("inventory", CRS, inv_geoms, records),
        VectorLayer(f"outlines_{end_year}", CRS, end_geoms, end_records),
    ])
    regional = (a1_total - a0_total) / a0_total / years * 100.0
    progress.update(1.0, f"{n} glaciers, {a0_total:.3f} km2 in {start_year}, "
                         f"{a1_total:.3f} km2 in {end_year}, true regional rate {regional:.3f} %/yr")
    return SyntheticRegion(folder, written["imagery_start"], written["imagery_end"], written["dem"],
                           inventory, written["truth_start"], written["truth_end"], start_date,
                           end_date, n, regional)
