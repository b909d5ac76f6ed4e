"""A small Sentinel-2 L2A archive built from a synthetic region, laid out as Earth Search
serves it: one cloud-optimised GeoTIFF per band and tile (B2-B8 at 10 m, B12 and SCL at
20 m), STAC items with eo:cloud_cover, s2:processing_baseline and relative orbit, and a
Copernicus-DEM-like item. Scenes differ in where their clouds are, so the least cloudy
scene *over a glacier* is not the least cloudy scene overall."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.shutil import copy as rio_copy
from rasterio.warp import calculate_default_transform, reproject, transform_geom
from rasterio.windows import Window

ASSETS = {"B2": "blue", "B3": "green", "B4": "red", "B8": "nir", "B12": "swir22", "SCL": "scl"}
BAND_INDEX = {"B2": 1, "B3": 2, "B4": 3, "B8": 4, "B12": 5, "SCL": 6}


def _cog(path, data, profile):
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data, 1)
    rio_copy(tmp, path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256, OVERVIEWS="NONE")
    tmp.unlink()


def cloud_over(stack, centre_rc, radius_px):
    """Paint a thick cloud (bright bands, SCL 9) on a (6, H, W) uint16 stack."""
    h, w = stack.shape[1:]
    yy, xx = np.mgrid[0:h, 0:w]
    cloud = (yy - centre_rc[0]) ** 2 + (xx - centre_rc[1]) ** 2 <= radius_px ** 2
    cloud &= stack[0] > 0
    for b, refl in zip(range(5), (0.78, 0.77, 0.77, 0.80, 0.42)):
        stack[b][cloud] = int(refl * 10000 + 1000)  # baseline >= 04.00 DNs (close enough before)
    stack[5][cloud] = 9
    return stack


def glacier_centres(truth_path):
    with rasterio.open(truth_path) as src:
        ids = src.read(1)
    return {g: tuple(int(v) for v in np.argwhere(ids == g).mean(axis=0)) for g in np.unique(ids[ids > 0])}


def build_archive(region, root: Path, base_url: str, scenes, tiles="split", zone_east=None,
                  imagery=None):
    """Write COGs under root/data and items to root/items.json.

    scenes: [(name, date, eo_cloud_cover, glacier ids to cloud over (or 'all'))].
    imagery: the scene to derive them from (default the region's end-date scene); a list
    gives one per scene.
    tiles: 'split' = two overlapping MGRS-like tiles (west/east), 'single' = one.
    zone_east: EPSG code to store the east tile in (a glacier across two UTM zones)."""
    root = Path(root)
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    sources = imagery if isinstance(imagery, (list, tuple)) else [imagery or region.imagery_end] * len(scenes)
    with rasterio.open(sources[0]) as src:
        prof = src.profile
        crs, transform = src.crs, src.transform
        h, w = src.height, src.width
    centres = glacier_centres(region.truth_start)
    tile_windows = {"T32TAA": Window(0, 0, int(w * 0.6), h), "T32TAB": Window(int(w * 0.4), 0, w - int(w * 0.4), h)} \
        if tiles == "split" else {"T32TAA": Window(0, 0, w, h)}
    items = []
    for (name, date, cover, clouded), source in zip(scenes, sources):
        with rasterio.open(source) as src:
            stack = src.read()
            baseline = src.tags().get("PROCESSING_BASELINE", "05.09")
        stack[:, stack[0] == 0] = 0
        if clouded == "all":
            cloud_over(stack, (h // 2, w // 2), h + w)
        for g in ([] if clouded == "all" else clouded):
            cloud_over(stack, centres[g], 25)
        for tile, win in tile_windows.items():
            tile_crs, tile_tr = crs, rasterio.windows.transform(win, transform)
            sub = stack[:, win.row_off:win.row_off + win.height, win.col_off:win.col_off + win.width]
            if zone_east and tile == "T32TAB":
                sub, tile_tr, tile_crs = _to_zone(sub, tile_tr, crs, zone_east)
            assets = {}
            for band, key in ASSETS.items():
                arr = sub[BAND_INDEX[band] - 1]
                tr = tile_tr
                if band in ("B12", "SCL"):  # 20 m bands
                    arr, tr = _coarsen(arr, tile_tr, band == "SCL")
                fname = f"{name}_{tile}_{band}.tif"
                _cog(data_dir / fname, arr, dict(driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                                                 count=1, dtype=prof["dtype"] if band != "SCL" else "uint8",
                                                 crs=tile_crs, transform=tr, nodata=0))
                assets[key] = {"href": f"{base_url}/data/{fname}", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                               "roles": ["data"]}
            with rasterio.open(data_dir / f"{name}_{tile}_B2.tif") as t:
                footprint = transform_geom(t.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [[
                    (t.bounds.left, t.bounds.bottom), (t.bounds.right, t.bounds.bottom),
                    (t.bounds.right, t.bounds.top), (t.bounds.left, t.bounds.top),
                    (t.bounds.left, t.bounds.bottom)]]})
                epsg = t.crs.to_epsg()
            xs = [p[0] for p in footprint["coordinates"][0]]
            ys = [p[1] for p in footprint["coordinates"][0]]
            items.append({
                "type": "Feature", "stac_version": "1.0.0", "id": f"S2B_{tile}_{date:%Y%m%d}_{name}",
                "collection": "sentinel-2-l2a", "geometry": footprint,
                "bbox": [min(xs), min(ys), max(xs), max(ys)],
                "properties": {"datetime": f"{date.isoformat()}T10:20:31Z", "platform": "sentinel-2b",
                               "eo:cloud_cover": cover, "s2:processing_baseline": baseline,
                               "sat:relative_orbit": 22, "proj:epsg": epsg, "s2:mgrs_tile": tile},
                "assets": assets, "links": []})
    # A DEM collection item (Copernicus GLO-30 stand-in: the region's DEM as a COG).
    with rasterio.open(region.dem) as d:
        dem = d.read(1)
        _cog(data_dir / "dem.tif", dem, dict(d.profile, driver="GTiff"))
        footprint = transform_geom(d.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [[
            (d.bounds.left, d.bounds.bottom), (d.bounds.right, d.bounds.bottom),
            (d.bounds.right, d.bounds.top), (d.bounds.left, d.bounds.top), (d.bounds.left, d.bounds.bottom)]]})
    xs = [p[0] for p in footprint["coordinates"][0]]
    ys = [p[1] for p in footprint["coordinates"][0]]
    items.append({"type": "Feature", "stac_version": "1.0.0", "id": "DEM_tile", "collection": "cop-dem-glo-30",
                  "geometry": footprint, "bbox": [min(xs), min(ys), max(xs), max(ys)],
                  "properties": {"datetime": "2021-04-22T00:00:00Z"},
                  "assets": {"data": {"href": f"{base_url}/data/dem.tif", "roles": ["data"]}}, "links": []})
    path = root / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path, centres


def _coarsen(arr, transform, categorical):
    h, w = arr.shape[0] // 2, arr.shape[1] // 2
    a = arr[:2 * h, :2 * w].reshape(h, 2, w, 2)
    if categorical:
        out = a[:, 0, :, 0]
    else:
        valid = a > 0
        out = np.where(valid.all(axis=(1, 3)), a.mean(axis=(1, 3)), 0).astype(arr.dtype)
    return out, transform * rasterio.Affine.scale(2)


def _to_zone(stack, transform, crs, epsg):
    h, w = stack.shape[1:]
    bounds = rasterio.transform.array_bounds(h, w, transform)
    dst_tr, dw, dh = calculate_default_transform(crs, f"EPSG:{epsg}", w, h, *bounds, resolution=10)
    out = np.zeros((stack.shape[0], dh, dw), stack.dtype)
    for b in range(stack.shape[0]):
        reproject(stack[b], out[b], src_transform=transform, src_crs=crs, dst_transform=dst_tr,
                  dst_crs=f"EPSG:{epsg}", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
    return out, dst_tr, rasterio.crs.CRS.from_epsg(epsg)


def scenes_for(target: dt.date):
    """The standard test scenes around `target` (see build_archive)."""
    return [
        ("a", target - dt.timedelta(days=10), 60.0, []),      # clear over glaciers, cloudy elsewhere
        ("b", target + dt.timedelta(days=2), 5.0, [1]),       # least cloudy overall, cloud on glacier 1
        ("c", target - dt.timedelta(days=20), 0.0, []),       # perfect but outside +-15 days
        ("d", target + dt.timedelta(days=5), 90.0, "all"),    # every glacier clouded
    ]
