"""Per-glacier Sentinel-2 L2A and DEM acquisition from STAC APIs (Diaconu & Bamber 2023).

For each glacier: search the collections (a priority list) within +-WINDOW_DAYS of DATE;
group the items into scenes (one acquisition, possibly over several MGRS tiles; an
acquisition held by several collections is taken from the first of them); keep the
MAX_CANDIDATES scenes with the least scene cloud cover; for each, read only the SCL pixels
over the glacier and measure the share of its outline that is no data, saturated, cloud,
shadow or cirrus; take the scene with the smallest share (ties: collection priority, then
the date closest to DATE). With SELECTION=cloud_snow (DL4GAM), among the scenes within
SNOW_TOLERANCE of the smallest share, the one with the least snow on the ground around the
glacier wins, because late seasonal snow inflates glacier area. Then read only the windows
needed of each band from the cloud-optimised GeoTIFFs (HTTP range reads through GDAL), warped
onto the glacier's own UTM grid at 10 m (B12 bilinear from 20 m, SCL nearest), decoded to
surface reflectance item by item (whether the DNs carry the +1000 offset is decided from the
item's metadata and checked against a sample of the whole item: core.imagery.reflectance), mosaicked
across tiles and UTM zones, plus the DEM (bilinear) on the same grid; one float32 GeoTIFF per
glacier (B2, B3, B4, B8, B12, DEM, QUALITY=SCL), written atomically. Existing complete
outputs are skipped, so a rerun resumes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio import features
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT

from . import reflectance
from .catalogs import DEFAULT_COLLECTIONS, EARTH_SEARCH, PC_SAS, SELECTIONS
from . import sentinel2 as s2
from ..geodesy import to_lonlat, utm_epsg
from ..identity import file_names, fingerprint, safe_name
from ..io import GTIFF_PROFILE, atomic_output, remove_partials
from ..cluster import LocalPool
from ..progress import Cancelled, Progress

# cloud_snow: scenes whose masked share is within this of the best compete on snow.
SNOW_TOLERANCE = 0.05
SCL_SNOW = 11
# STAC asset keys of each band, in the order they are tried (Earth Search v1, Planetary
# Computer / ESA names): the one place where API naming lives.
ASSET_KEYS = {"B2": ("blue", "B02"), "B3": ("green", "B03"), "B4": ("red", "B04"),
              "B8": ("nir", "B08"), "B12": ("swir22", "B12"), "SCL": ("scl", "SCL")}
DEM_ASSET_KEYS = ("data", "elevation", "dem")
RESAMPLING = {"B12": Resampling.bilinear, "SCL": Resampling.nearest}
OUTPUT_BANDS = list(s2.BANDS) + ["DEM", "QUALITY"]
FORMAT_TAG = "GLACIER_MAPPER_ACQUISITION"
# GDAL settings for cloud-optimised reads: no directory listings, merged ranges, retries
# with exponential backoff on 429/5xx, timeouts.
GDAL_HTTP = dict(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MERGE_CONSECUTIVE_RANGES="YES",
                 GDAL_HTTP_MULTIPLEX="YES", VSI_CACHE="TRUE", GDAL_HTTP_MAX_RETRY="5",
                 GDAL_HTTP_RETRY_DELAY="1", GDAL_HTTP_TIMEOUT="60", GDAL_HTTP_CONNECTTIMEOUT="20",
                 CPL_VSIL_CURL_ALLOWED_EXTENSIONS=".tif,.tiff,.TIF")


@dataclass
class AcquireOptions:
    date: dt.date
    window_days: int = 15
    max_candidates: int = 5
    stac_url: str = EARTH_SEARCH
    collection: str = DEFAULT_COLLECTIONS   # comma-separated priority list
    buffer_m: float = 1280.0
    dem: str | None = None               # local raster path, or "stac:<collection>"
    dem_stac_url: str | None = None      # default: stac_url
    max_workers: int = 4
    pixel_size: float = 10.0
    http_timeout: float = 60.0
    http_retries: int = 5
    sign: str = "auto"                   # auto, none, planetary-computer
    sas_url: str = PC_SAS                # Planetary Computer token endpoint
    selection: str = "cloud"             # cloud | cloud_snow

    @property
    def collections(self) -> list[str]:
        return [c.strip() for c in self.collection.split(",") if c.strip()]


@dataclass
class GlacierResult:
    id: object
    status: str
    file: str = ""
    scene_id: str = ""
    date: str = ""
    cloud_pct: float = float("nan")
    masked_pct: float = float("nan")
    candidates: int = 0
    detail: str = ""
    collection: str = ""
    offset_in_dn: str = ""           # yes / no (per item, comma-joined for mosaics)
    offset_decided_by: str = ""      # metadata / pixels / metadata+pixels / assumed
    offset_metadata: str = ""
    offset_pixels: str = ""
    dark_dn: float = float("nan")    # darkest band's 1st percentile of valid DNs
    snow_pct: float = float("nan")   # snow on the ground around the glacier (SCL 11)
    cloud_only_snow_pct: float = float("nan")  # the same for the scene SELECTION=cloud takes


@dataclass
class Scene:
    """One acquisition: the items of one platform, day and orbit over the glacier."""
    items: list
    datetime: dt.datetime
    cloud_cover: float
    key: tuple = field(default=())
    collection: str = ""

    @property
    def id(self) -> str:
        return "+".join(sorted(i.id for i in self.items))


# --------------------------------------------------------------------------- STAC access

def _signer(options: AcquireOptions):
    """Planetary Computer needs SAS tokens appended to asset URLs (fetched per collection)."""
    mode = options.sign
    if mode == "auto":
        mode = "planetary-computer" if "planetarycomputer" in options.stac_url else "none"
    if mode == "none":
        return None
    if mode != "planetary-computer":
        raise ValueError(f"unknown signing {options.sign!r}: use auto, none or planetary-computer")
    import requests
    tokens: dict[str, tuple[str, float]] = {}
    lock = threading.Lock()

    def token(collection):
        with lock:
            tok, expiry = tokens.get(collection, ("", 0.0))
            if time.time() < expiry - 60:
                return tok
            r = requests.get(f"{options.sas_url}/{collection}", timeout=options.http_timeout)
            r.raise_for_status()
            tok = r.json()["token"]
            tokens[collection] = (tok, time.time() + 3000)
            return tok

    def sign(item):
        tok = token(item.collection_id or options.collections[0])
        for asset in item.assets.values():
            if "?" not in asset.href and asset.href.startswith("http"):
                asset.href = f"{asset.href}?{tok}"
        return item

    return sign


def open_catalog(options: AcquireOptions, url: str | None = None):
    """A pystac-client Client for an API, or a static catalog/collection on disk."""
    url = url or options.stac_url
    local = Path(url)
    if local.exists():
        import pystac
        return pystac.read_file(str(local))
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry
    retry = Retry(total=options.http_retries, backoff_factor=0.5, allowed_methods=None,
                  status_forcelist=(429, 500, 502, 503, 504), respect_retry_after_header=True)
    io = StacApiIO(timeout=options.http_timeout, max_retries=retry)
    return Client.open(url, stac_io=io)


def search_items(catalog, collections, geometry_lonlat, start: dt.date, end: dt.date) -> list:
    """Items of `collections` (an id or a list) meeting the glacier between start and end
    (inclusive)."""
    from shapely.geometry import mapping, shape
    collections = [collections] if isinstance(collections, str) else list(collections)
    window = f"{start.isoformat()}T00:00:00Z/{end.isoformat()}T23:59:59Z"
    if hasattr(catalog, "search"):
        search = catalog.search(collections=collections, intersects=mapping(geometry_lonlat),
                                datetime=window, max_items=1000, limit=100)
        return list(search.items())
    # Static catalog: walk it and filter here.
    found = []
    for item in catalog.get_items(recursive=True):
        if (item.collection_id is not None and item.collection_id not in collections) or item.geometry is None:
            continue
        day = (item.datetime or item.common_metadata.start_datetime).date()
        if start <= day <= end and shape(item.geometry).intersects(geometry_lonlat):
            found.append(item)
    return found


def _relative_orbit(item):
    p = item.properties
    orbit = p.get("sat:relative_orbit", p.get("s2:relative_orbit", p.get("sentinel:relative_orbit")))
    if orbit is None:  # Earth Search: only in the product name (..._R106_T39QTA_...)
        m = re.search(r"_R(\d{3})_", str(p.get("s2:product_uri", "")) + "_" + item.id)
        orbit = int(m.group(1)) if m else None
    return None if orbit is None else int(orbit)


def group_scenes(items, collections=None) -> list[Scene]:
    """Items of one platform, day and relative orbit form one scene (adjacent MGRS tiles).
    The same acquisition found in several collections is taken from the first collection of
    `collections` that holds it (catalogs spell platforms differently: compared in lower
    case)."""
    priority = {c: i for i, c in enumerate(collections or [])}
    groups: dict[tuple, dict[str, list]] = {}
    for item in items:
        p = item.properties
        when = item.datetime or dt.datetime.fromisoformat(p["start_datetime"].replace("Z", "+00:00"))
        key = (str(p.get("platform", "")).lower(), when.date().isoformat(), _relative_orbit(item))
        groups.setdefault(key, {}).setdefault(item.collection_id or "", []).append(item)
    scenes = []
    for key, by_collection in groups.items():
        collection = min(by_collection, key=lambda c: priority.get(c, len(priority)))
        members = by_collection[collection]
        clouds = [m.properties.get("eo:cloud_cover") for m in members]
        clouds = [c for c in clouds if c is not None]
        scenes.append(Scene(members, min(m.datetime for m in members),
                            float(np.mean(clouds)) if clouds else 100.0, key, collection))
    return scenes


# --------------------------------------------------------------------------- pixels

@dataclass
class Grid:
    crs: str
    transform: object
    width: int
    height: int


def glacier_grid(geom_lonlat, buffer_m: float, pixel: float) -> tuple[Grid, object]:
    """The glacier's own UTM grid (zone of its centroid), snapped to `pixel` metres, and the
    glacier outline in that CRS."""
    from pyproj import Transformer
    from shapely.ops import transform as shp_transform
    c = geom_lonlat.centroid
    crs = f"EPSG:{utm_epsg(c.x, c.y)}"
    tr = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    geom = shp_transform(tr.transform, geom_lonlat)
    left, bottom, right, top = geom.buffer(buffer_m).bounds
    left, bottom = math.floor(left / pixel) * pixel, math.floor(bottom / pixel) * pixel
    right, top = math.ceil(right / pixel) * pixel, math.ceil(top / pixel) * pixel
    return Grid(crs, from_origin(left, top, pixel, pixel), int(round((right - left) / pixel)),
                int(round((top - bottom) / pixel))), geom


def asset_for(item, band: str):
    for key in ASSET_KEYS[band]:
        if key in item.assets:
            return item.assets[key]
    raise KeyError(f"item {item.id} has no asset for {band} (looked for {', '.join(ASSET_KEYS[band])})")


def read_warped(href, grid: Grid, resampling, dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of band 1 of `href` warped onto `grid`; only the needed window is read."""
    with rasterio.open(href) as src:
        nodata = src.nodata
        if nodata is None and np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
            nodata = s2.NODATA  # L2A convention: DN 0 is no data
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                       height=grid.height, resampling=resampling, src_nodata=nodata,
                       nodata=np.nan if nodata is None else nodata) as vrt:
            data = vrt.read(1, out_dtype=dtype)
    valid = np.isfinite(data)
    if nodata is not None and not np.isnan(nodata):
        valid &= data != nodata
    return data, valid


def read_scene_band(scene: Scene, band: str, grid: Grid, sign=None) -> np.ndarray:
    """A band's raw values on the grid, tiles mosaicked (first valid value wins)."""
    out = np.full((grid.height, grid.width), np.nan, np.float32)
    for item in scene.items:
        item = sign(item) if sign else item
        data, valid = read_warped(asset_for(item, band).href, grid, RESAMPLING.get(band, Resampling.nearest))
        fill = valid & np.isnan(out)
        out[fill] = data[fill]
    return out


# Whole-item samples for the offset decision: at most this many pixels a side, read from the
# COG's overviews (a few hundred kB per item), decided once per item and process.
ITEM_SAMPLE = 512
_ITEM_DECISIONS: dict = {}
_ITEM_LOCK = threading.Lock()


def read_decimated(href, shape) -> np.ndarray:
    """Band 1 of `href` over its whole extent at `shape` (nearest; GDAL reads the overview
    that fits, so a 10980-pixel tile costs its 1/16 or 1/32 overview)."""
    with rasterio.open(href) as src:
        return src.read(1, out_shape=shape, resampling=Resampling.nearest).astype(np.float32)


def item_decision(item) -> reflectance.OffsetDecision:
    """Does this item's DNs carry the +1000 offset: its metadata, checked against a sample of
    the whole item (surfaces that cannot be negative only), so that every chip cut from it
    is decoded alike, whichever glacier asked first (the module docstring of reflectance)."""
    first = asset_for(item, s2.BANDS[0])
    key = (item.id, first.href.split("?")[0])  # signed hrefs change with their token
    with _ITEM_LOCK:
        if key in _ITEM_DECISIONS:
            return _ITEM_DECISIONS[key]
    with rasterio.open(first.href) as src:
        factor = max(1, math.ceil(max(src.height, src.width) / ITEM_SAMPLE))
        shape = (math.ceil(src.height / factor), math.ceil(src.width / factor))
    dns = [read_decimated(asset_for(item, band).href, shape) for band in s2.BANDS]
    valid = reflectance.evidence_mask(read_decimated(asset_for(item, "SCL").href, shape))
    scale, metadata, source = reflectance.stac_metadata(
        item.properties, (first.extra_fields.get("raster:bands") or [None])[0])
    decision = reflectance.decide(metadata, source, dns, valid)
    with _ITEM_LOCK:
        if len(_ITEM_DECISIONS) > 4096:  # a long-lived worker: bounded
            _ITEM_DECISIONS.clear()
        _ITEM_DECISIONS[key] = decision
    return decision


def read_scene_reflectance(scene: Scene, grid: Grid, sign=None):
    """(float32 surface reflectance (5, H, W), [(item id, OffsetDecision)]). Each item (tile)
    is decoded by its own decision (item_decision) before the tiles are mosaicked."""
    out = np.full((len(s2.BANDS), grid.height, grid.width), np.nan, np.float32)
    decisions = []
    for item in scene.items:
        item = sign(item) if sign else item
        dns, valid = [], np.ones((grid.height, grid.width), bool)
        for band in s2.BANDS:
            data, ok = read_warped(asset_for(item, band).href, grid, RESAMPLING.get(band, Resampling.nearest))
            data[~ok] = np.nan
            dns.append(data)
            valid &= ok
        asset = asset_for(item, s2.BANDS[0])
        scale = reflectance.stac_metadata(item.properties, (asset.extra_fields.get("raster:bands") or [None])[0])[0]
        decision = item_decision(item)
        decisions.append((item.id, decision))
        fill = valid & np.isnan(out[0])
        for i, data in enumerate(dns):
            out[i][fill] = (data[fill] + np.float32(decision.offset)) * np.float32(scale)
    return out, decisions


def snow_share(scl: np.ndarray, outline_mask: np.ndarray) -> float:
    """Share of the clear ground around the glacier (the grid outside the outline, 20 m
    away from it) that SCL classes as snow."""
    from scipy import ndimage
    around = ~ndimage.binary_dilation(outline_mask, iterations=2)
    clear = around & scl_clear(scl)
    n = clear.sum()
    return float((clear & (scl == SCL_SNOW)).sum() / n) if n else float("nan")


def scl_clear(scl: np.ndarray) -> np.ndarray:
    """Pixels whose SCL class says something about the surface (not no data, cloud, shadow,
    cirrus or saturated)."""
    return np.isfinite(scl) & ~np.isin(np.nan_to_num(scl, nan=0).astype(int), s2.SCL_MASKED)


def masked_share(scl: np.ndarray, outline_mask: np.ndarray) -> float:
    """Share of the outline that is no data or SCL-masked (cloud, shadow, cirrus, ...)."""
    inside = outline_mask.sum()
    if inside == 0:
        return 1.0
    bad = ~scl_clear(scl)
    return float((bad & outline_mask).sum() / inside)


def read_dem(options: AcquireOptions, grid: Grid, geom_lonlat, sign=None) -> np.ndarray:
    if not options.dem:
        return np.full((grid.height, grid.width), np.nan, np.float32)
    if not options.dem.startswith("stac:"):
        data, valid = read_warped(options.dem, grid, Resampling.bilinear)
        data[~valid] = np.nan
        return data.astype(np.float32)
    catalog = open_catalog(options, options.dem_stac_url or options.stac_url)
    from shapely.geometry import mapping
    collection = options.dem[len("stac:"):]
    if hasattr(catalog, "search"):
        items = list(catalog.search(collections=[collection], intersects=mapping(geom_lonlat),
                                    max_items=50).items())
    else:
        items = [i for i in catalog.get_items(recursive=True) if i.collection_id in (None, collection)]
    if not items:
        raise ValueError(f"DEM: no item of {collection} covers the glacier")
    out = np.full((grid.height, grid.width), np.nan, np.float32)
    for item in items:
        item = sign(item) if sign else item
        key = next((k for k in DEM_ASSET_KEYS if k in item.assets), None) or next(iter(item.assets))
        data, valid = read_warped(item.assets[key].href, grid, Resampling.bilinear)
        fill = valid & np.isnan(out)
        out[fill] = data[fill]
    return out


# --------------------------------------------------------------------------- per glacier

def _params_hash(options: AcquireOptions) -> str:
    d = {k: str(v) for k, v in options.__dict__.items() if k not in ("max_workers",)}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def output_complete(path: Path, params_hash: str) -> dict | None:
    """Tags of an existing output written with the same parameters and outline, else None."""
    if not path.is_file():
        return None
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
            if tags.get(FORMAT_TAG) == params_hash and src.count == len(OUTPUT_BANDS):
                return tags
    except rasterio.errors.RasterioIOError:
        return None
    return None


def acquire_glacier(gid, geom_lonlat, options: AcquireOptions, folder: Path, catalog,
                    progress: Progress, sign=None, name=None) -> GlacierResult:
    path = folder / f"{name or safe_name(gid)}.tif"
    params = f"{_params_hash(options)}:{fingerprint(geom_lonlat)}"  # a changed outline is redone
    done = output_complete(path, params)
    if done is not None:
        return _result_from_tags(gid, path, done)
    progress.check()
    grid, geom = glacier_grid(geom_lonlat, options.buffer_m, options.pixel_size)
    outline = features.rasterize([(geom, 1)], out_shape=(grid.height, grid.width),
                                 transform=grid.transform, fill=0, dtype="uint8").astype(bool)
    start = options.date - dt.timedelta(days=options.window_days)
    end = options.date + dt.timedelta(days=options.window_days)
    collections = options.collections
    scenes = group_scenes(search_items(catalog, collections, geom_lonlat, start, end), collections)
    if not scenes:
        return GlacierResult(gid, "no scene", detail=f"no {' or '.join(collections)} item between "
                                                       f"{start} and {end}")
    priority = {c: i for i, c in enumerate(collections)}
    days = lambda scene: abs((scene.datetime.date() - options.date).days)  # noqa: E731
    candidates = sorted(scenes, key=lambda sc: (sc.cloud_cover, priority.get(sc.collection, 99), days(sc)))
    candidates = candidates[:options.max_candidates]
    scored = []
    for scene in candidates:
        progress.check()
        scl = read_scene_band(scene, "SCL", grid, sign)
        scored.append(dict(share=masked_share(scl, outline), snow=snow_share(scl, outline),
                           scene=scene, scl=scl))
    by_cloud = sorted(scored, key=lambda c: (round(c["share"], 6), priority.get(c["scene"].collection, 99),
                                             days(c["scene"])))
    chosen = by_cloud[0]
    if options.selection == "cloud_snow":
        near = [c for c in by_cloud if c["share"] <= by_cloud[0]["share"] + SNOW_TOLERANCE]
        chosen = min(near, key=lambda c: (np.nan_to_num(c["snow"], nan=1.0), by_cloud.index(c)))
    share, best, scl = chosen["share"], chosen["scene"], chosen["scl"]
    if share >= 1.0:
        return GlacierResult(gid, "no usable scene", candidates=len(candidates),
                             detail=f"all {len(candidates)} candidates leave the glacier fully "
                                    "masked (cloud, shadow or no data)")
    progress.check()
    bands, decisions = read_scene_reflectance(best, grid, sign)
    notes = []
    for item_id, d in decisions:
        if d.overruled:
            progress.warning(f"{gid}: {item_id}: metadata and pixels disagree about the +1000 "
                             f"offset; following the pixels (strong evidence): {d.describe()}")
            notes.append(f"{item_id}: metadata contradicted by pixels, followed the pixels")
        elif d.disagreement:
            progress.warning(f"{gid}: {item_id}: the pixels weakly contradict the metadata about the "
                             f"+1000 offset; following the metadata: {d.describe()}")
            notes.append(f"{item_id}: pixels weakly contradict the metadata, followed the metadata")
        elif d.decided_by == "assumed":
            progress.warning(f"{gid}: {item_id}: {d.describe()}; assumed no offset")
            notes.append(f"{item_id}: offset unknown (no metadata, pixels undecided): assumed none")
    dem = read_dem(options, grid, geom_lonlat, sign)
    dem_share = float(np.isfinite(dem[outline]).mean()) if outline.any() else 1.0
    if options.dem and dem_share < 0.5:  # a chip whose DEM band is (mostly) empty is no chip
        return GlacierResult(gid, "no DEM", candidates=len(candidates),
                             detail=f"DEM {options.dem} has no value over {100 * (1 - dem_share):.0f} % of the "
                                    "glacier: give a DEM that covers it")
    if options.dem and dem_share < 1.0:
        notes.append(f"DEM covers {100 * dem_share:.0f} % of the glacier")
    quality = np.where(np.isfinite(scl), scl, 0).astype(np.float32)
    stack = np.concatenate([bands, dem[None], quality[None]]).astype(np.float32)
    first = best.items[0]

    def joined(values):
        return ",".join(dict.fromkeys(str(v) for v in values))

    per_item = [d.tags() for _, d in decisions]
    offset_tags = {k: joined(t[k] for t in per_item) for k in per_item[0]}
    dark = [d.dark_dn for _, d in decisions if np.isfinite(d.dark_dn)]  # the darkest item's, not a list
    tags = {FORMAT_TAG: params, "GLACIER_ID": str(gid), "SCENE_ID": best.id,
            "DATETIME": best.datetime.isoformat(), "DATE": best.datetime.date().isoformat(),
            "PLATFORM": str(first.properties.get("platform", "")),
            "CLOUD_COVER": f"{best.cloud_cover:.2f}", "MASKED_PCT": f"{100 * share:.2f}",
            "CANDIDATES": str(len(candidates)), "SCL_MASKED_CLASSES": ",".join(map(str, s2.SCL_MASKED)),
            "PROCESSING_BASELINE": joined(sorted({str(i.properties.get("s2:processing_baseline", ""))
                                                  for i in best.items})),
            **offset_tags, "OFFSET_DARK_DN_P1": f"{min(dark):.0f}" if dark else "nan",
            "SNOW_PCT": f"{100 * chosen['snow']:.2f}",
            "CLOUD_ONLY_SNOW_PCT": f"{100 * by_cloud[0]['snow']:.2f}", "SELECTION": options.selection,
            "BOA_ADD_OFFSET": "0", "DETAIL": "; ".join(notes),
            "UNITS": "B2-B12: surface reflectance; DEM: m; QUALITY: SCL class",
            "STAC_URL": options.stac_url, "COLLECTION": best.collection,
            "TARGET_DATE": options.date.isoformat()}
    profile = dict(GTIFF_PROFILE, driver="GTiff", width=grid.width, height=grid.height,
                   count=len(OUTPUT_BANDS), dtype="float32", crs=grid.crs,
                   transform=grid.transform, nodata=float("nan"), predictor=3)
    with atomic_output(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(stack)
            dst.descriptions = tuple(OUTPUT_BANDS)
            dst.update_tags(**tags)
    return _result_from_tags(gid, path, tags, "ok")


def _result_from_tags(gid, path: Path, tags: dict, status="exists") -> GlacierResult:
    """The table row of an acquired chip, from the tags it carries (a rerun reports the same)."""
    def number(key):
        try:
            return float(tags.get(key, "nan"))
        except ValueError:
            return float("nan")
    detail = tags.get("DETAIL", "")
    if status == "exists":
        detail = "; ".join(filter(None, ["already acquired with these parameters", detail]))
    return GlacierResult(gid, status, str(path), tags.get("SCENE_ID", ""), tags.get("DATE", ""),
                         number("CLOUD_COVER"), number("MASKED_PCT"), int(tags.get("CANDIDATES", 0)),
                         detail, tags.get("COLLECTION", ""), tags.get("BOA_OFFSET_IN_SOURCE_DN", ""),
                         tags.get("OFFSET_DECIDED_BY", ""), tags.get("OFFSET_METADATA", ""),
                         tags.get("OFFSET_PIXELS", ""), number("OFFSET_DARK_DN_P1"),
                         number("SNOW_PCT"), number("CLOUD_ONLY_SNOW_PCT"))


_PROCESS_CATALOG: dict = {}
_PROCESS_LOCK = threading.Lock()


def _process_catalog(options: AcquireOptions):
    """(catalog, signer) opened once per process and API: a Dask worker runs many glaciers."""
    key = (options.stac_url, options.sign, options.sas_url)
    with _PROCESS_LOCK:
        if key not in _PROCESS_CATALOG:
            _PROCESS_CATALOG[key] = (open_catalog(options), _signer(options))
        return _PROCESS_CATALOG[key]


def acquire_one(options: AcquireOptions, folder, gid, geom_lonlat, name, catalog=None, sign=None, *,
                progress: Progress) -> GlacierResult:
    """One glacier, its failure a row of the table (never the end of the run); the piece a
    pool (threads here, tasks on a Dask cluster) runs."""
    if geom_lonlat is None:  # kept in the table, never dropped silently
        return GlacierResult(gid, "no geometry", detail="the feature has no outline")
    if catalog is None:
        catalog, sign = _process_catalog(options)
    with rasterio.Env(**GDAL_HTTP):
        try:
            return acquire_glacier(gid, geom_lonlat, options, Path(folder), catalog, progress, sign, name)
        except Cancelled:
            raise
        except Exception as err:  # one glacier's failure never stops the others
            return GlacierResult(gid, "error", detail=f"{type(err).__name__}: {err}")


def check_collections(catalog, options: AcquireOptions) -> None:
    """COLLECTION and a DEM collection that the API does not have are refused before any
    glacier is searched (else every glacier says "no scene", or its DEM band stays empty)."""
    if not hasattr(catalog, "get_collections"):  # a static catalog: its items tell
        return
    try:
        have = {c.id for c in catalog.get_collections()}
    except Exception:  # an API without /collections: the search will tell
        return
    if not have:
        return
    wanted = options.collections
    if not set(wanted) & have:
        raise ValueError(f"COLLECTION: {', '.join(wanted)} not in the catalog {options.stac_url} (it has "
                         f"{', '.join(sorted(have)[:12])}{' ...' if len(have) > 12 else ''})")
    if options.dem and options.dem.startswith("stac:") and options.dem_stac_url in (None, options.stac_url):
        dem = options.dem[len("stac:"):]
        if dem not in have:
            raise ValueError(f"DEM: the collection {dem!r} is not in the catalog {options.stac_url} (it has "
                             f"{', '.join(sorted(have)[:12])}{' ...' if len(have) > 12 else ''})")


def check_dem(options: AcquireOptions, outlines_lonlat) -> None:
    """A DEM file that does not exist, or lies nowhere under the glaciers, is refused before
    any work (else every chip carries an empty DEM band)."""
    if not options.dem or options.dem.startswith("stac:") or "://" in options.dem or not outlines_lonlat:
        return
    from rasterio.warp import transform_bounds
    from shapely import total_bounds
    from shapely.geometry import box

    from ..labels import lonlat_box
    if not Path(options.dem).is_file():
        raise FileNotFoundError(f"DEM: {options.dem} does not exist")
    with rasterio.open(options.dem) as src:
        if src.crs is None:
            raise ValueError(f"DEM: {options.dem} has no CRS: georeference it first")
        crs, bounds = src.crs, src.bounds
    covered = box(*transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))
    if not any(g.intersects(covered) for g in outlines_lonlat):
        raise ValueError(f"DEM: {options.dem} covers {lonlat_box(crs, bounds)}, none of the glaciers "
                         f"({lonlat_box('EPSG:4326', total_bounds(outlines_lonlat))}): give the DEM of their region")


def acquire(glaciers, options: AcquireOptions, folder, progress: Progress | None = None,
            catalog=None, pool=None) -> list[GlacierResult]:
    """glaciers: [(id, shapely geometry, crs)]. One result per glacier, in input order.
    pool: where the glaciers run (core.cluster; default MAX_WORKERS threads here)."""
    progress = progress or Progress()
    folder = Path(folder).resolve()  # workers elsewhere have another working directory
    folder.mkdir(parents=True, exist_ok=True)
    if options.window_days < 0 or options.max_candidates < 1 or options.max_workers < 1:
        raise ValueError("WINDOW_DAYS must be >= 0, MAX_CANDIDATES and MAX_WORKERS >= 1")
    if not options.collections:
        raise ValueError("COLLECTION: give at least one collection id, e.g. " + DEFAULT_COLLECTIONS)
    if options.selection not in SELECTIONS:
        raise ValueError(f"SELECTION must be one of {', '.join(SELECTIONS)}, not {options.selection!r}")
    lonlat = [None if g is None or g.is_empty else to_lonlat(g, crs) for _, g, crs in glaciers]
    check_dem(options, [g for g in lonlat if g is not None])
    try:
        catalog = catalog or open_catalog(options)
    except Exception as err:  # the API is down or not a STAC API
        raise ValueError(f"STAC_URL {options.stac_url}: cannot open the catalog ({err})") from None
    check_collections(catalog, options)
    pool = pool or LocalPool(options.max_workers)
    sign = None if pool.remote else _signer(options)
    names = file_names([gid for gid, _, _ in glaciers])
    here = () if pool.remote else (catalog, sign)  # workers open their own catalog
    items = [(gid, lonlat[i], names[i], *here) for i, (gid, _, _) in enumerate(glaciers)]

    def done(i, r):
        return f"{r.id}: {r.status}" + (f" {r.scene_id} ({r.date}, {r.masked_pct:.1f} % masked)"
                                        if r.file else f" ({r.detail})")

    results = pool.run(acquire_one, items, progress, done=done, common=(options, str(folder)))
    if pool.remote:
        remove_partials(r.file for r in results)
    return results
