"""A small Sentinel-2 L2A archive built from a synthetic region, laid out as the public
catalogs serve it: one cloud-optimised GeoTIFF per band and tile (B2-B8 at 10 m, B12 and SCL
at 20 m), STAC items, and a Copernicus-DEM-like item. Scenes differ in where their clouds
are, so the least cloudy scene *over a glacier* is not the least cloudy scene overall.

Item layouts (`CONVENTIONS`) follow real published items, field for field where it matters:
- earth-search-v1: Earth Search v1 `sentinel-2-l2a`, after S2A_39QTA_20230628_0_L2A
  (geopython/eodm tests/data/test_data.py): asset keys blue..swir22/scl, `raster:bands`
  scale 0.0001 offset -0.1 with bits_per_sample 15 on every item, `earthsearch:boa_offset_applied`,
  s2:processing_baseline, the relative orbit only inside s2:product_uri; COGs of baseline
  >= 04.00 have the offset removed (flag true).
- earth-search-c1: Earth Search `sentinel-2-c1-l2a`, after S2B_T38XNF_20250422T091553_L2A
  (philvarner/stac-factory tests/fixtures): same keys, `raster:bands` scale 0.0001 offset
  -0.1 (true: the DNs keep the offset), no flag, baseline >= 05.00 (the whole archive is
  reprocessed, so a 2015 scene carries the offset too).
- planetary-computer: Planetary Computer `sentinel-2-l2a`, after
  S2B_MSIL2A_20230101T102339_R065_T32UPC_20240806T223544 (stacathome tests): keys B02..B12
  and SCL, eo:bands but no raster:bands, platform "Sentinel-2B", sat:relative_orbit,
  s2:mgrs_tile, s2:processing_baseline; ESA's DNs (offset from 04.00 on).
- plain: the minimal layout of the earlier tests (ES keys, baseline only).
`lie="flag false"` / `lie="flag true"` make the Earth Search flag contradict the pixels, as
reported in Element84/earth-search #33, #66 and #71."""
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
PC_ASSETS = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08", "B12": "B12", "SCL": "SCL"}
CONVENTIONS = ("plain", "earth-search-v1", "earth-search-c1", "planetary-computer")
COLLECTION = {"plain": "sentinel-2-l2a", "earth-search-v1": "sentinel-2-l2a",
              "earth-search-c1": "sentinel-2-c1-l2a", "planetary-computer": "sentinel-2-l2a"}
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def _new_baseline(baseline) -> bool:
    return float(baseline) >= 4.0


def convention_of(convention, baseline, lie=False):
    """(baseline published, offset in the COG's DNs, properties, raster:bands of a reflectance
    asset or None, asset key map) of one item in `convention`."""
    if convention == "earth-search-c1":
        published = baseline if _new_baseline(baseline) else "05.00"  # Collection 1 reprocessing
        return published, True, {}, dict(nodata=0, data_type="uint16", spatial_resolution=10,
                                          scale=0.0001, offset=-0.1), ASSETS
    if convention == "earth-search-v1":
        # Earth Search removed the offset from new COGs and says so with its flag, except
        # where it did not: lie="flag false" = offset removed but the flag says it is not
        # (#66, #71); lie="flag true" = offset kept but the flag says it was removed.
        applied = _new_baseline(baseline)
        kept = lie == "flag true"
        flag = {"flag false": False, "flag true": True}.get(lie, applied)
        return baseline, kept, {"earthsearch:boa_offset_applied": flag}, dict(
            nodata=0, data_type="uint16", bits_per_sample=15, spatial_resolution=10,
            scale=0.0001, offset=-0.1), ASSETS
    if convention == "planetary-computer":
        return baseline, _new_baseline(baseline), {}, None, PC_ASSETS
    return baseline, _new_baseline(baseline), {}, None, ASSETS


def recode(stack, source_baseline, offset_in_dn):
    """DNs of a (6, H, W) stack (5 optical bands + SCL) re-expressed with or without the
    +1000 offset; 0 stays no data."""
    out = stack.copy()
    optical = out[:5].astype(np.int32)
    shift = (1000 if offset_in_dn else 0) - (1000 if _new_baseline(source_baseline) else 0)
    valid = optical > 0
    optical[valid] = np.clip(optical[valid] + shift, 1, 65535)
    out[:5] = optical.astype(stack.dtype)
    return out
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
                  imagery=None, convention="plain", lie=False, snow=None):
    """Write COGs under root/data and items to root/items.json.

    scenes: [(name, date, eo_cloud_cover, glacier ids to cloud over (or 'all'))].
    imagery: the scene to derive them from (default the region's end-date scene); a list
    gives one per scene.
    tiles: 'split' = two overlapping MGRS-like tiles (west/east), 'single' = one.
    zone_east: EPSG code to store the east tile in (a glacier across two UTM zones).
    convention, lie: the catalog layout (see the module docstring); a list gives one per scene.
    snow: {scene name: fraction} of the ground outside the glaciers to cover with fresh snow."""
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
    conventions = convention if isinstance(convention, (list, tuple)) else [convention] * len(scenes)
    lies = lie if isinstance(lie, (list, tuple)) else [lie] * len(scenes)
    for (name, date, cover, clouded), source, conv, lie_ in zip(scenes, sources, conventions, lies):
        with rasterio.open(source) as src:
            stack = src.read()
            baseline = src.tags().get("PROCESSING_BASELINE", "05.09")
        stack[:, stack[0] == 0] = 0
        if snow and name in snow:
            snow_over(stack, region.truth_start, snow[name], baseline)
        published, offset_in_dn, extra, rband, keys = convention_of(conv, baseline, lie_)
        stack = recode(stack, baseline, offset_in_dn)
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
            for band, key in keys.items():
                arr = sub[BAND_INDEX[band] - 1]
                tr = tile_tr
                if band in ("B12", "SCL"):  # 20 m bands
                    arr, tr = _coarsen(arr, tile_tr, band == "SCL")
                fname = f"{name}_{tile}_{band}.tif"
                _cog(data_dir / fname, arr, dict(driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                                                 count=1, dtype=prof["dtype"] if band != "SCL" else "uint8",
                                                 crs=tile_crs, transform=tr, nodata=0))
                assets[key] = {"href": f"{base_url}/data/{fname}", "type": COG_TYPE, "roles": ["data"]}
                res = 20 if band in ("B12", "SCL") else 10
                if conv == "planetary-computer":
                    assets[key]["gsd"] = float(res)
                    if band != "SCL":
                        assets[key]["eo:bands"] = [{"name": key, "common_name": ASSETS[band]}]
                elif conv != "plain":
                    assets[key]["roles"] = ["data"] if band == "SCL" else ["data", "reflectance"]
                    assets[key]["raster:bands"] = [dict(nodata=0, data_type="uint8", spatial_resolution=res)
                                                   if band == "SCL" else dict(rband, spatial_resolution=res)]
            with rasterio.open(data_dir / f"{name}_{tile}_B2.tif") as t:
                footprint = transform_geom(t.crs, "EPSG:4326", {"type": "Polygon", "coordinates": [[
                    (t.bounds.left, t.bounds.bottom), (t.bounds.right, t.bounds.bottom),
                    (t.bounds.right, t.bounds.top), (t.bounds.left, t.bounds.top),
                    (t.bounds.left, t.bounds.bottom)]]})
                epsg = t.crs.to_epsg()
            xs = [p[0] for p in footprint["coordinates"][0]]
            ys = [p[1] for p in footprint["coordinates"][0]]
            items.append({
                "type": "Feature", "stac_version": "1.0.0",
                "id": _item_id(conv, tile, date, published, name), "collection": COLLECTION[conv],
                "geometry": footprint, "bbox": [min(xs), min(ys), max(xs), max(ys)],
                "properties": _properties(conv, tile, date, cover, published, epsg, extra),
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


def _product_uri(tile, date, baseline):
    return (f"S2B_MSIL2A_{date:%Y%m%d}T102559_N{baseline.replace('.', '')}_R022_{tile}_"
            f"{date:%Y%m%d}T133216.SAFE")


def _item_id(conv, tile, date, baseline, name):
    if conv == "earth-search-v1":
        return f"S2B_{tile[1:]}_{date:%Y%m%d}_0_L2A_{name}"
    if conv == "earth-search-c1":
        return f"S2B_{tile}_{date:%Y%m%d}T102559_L2A_{name}"
    if conv == "planetary-computer":
        return f"S2B_MSIL2A_{date:%Y%m%d}T102559_R022_{tile}_{date:%Y%m%d}T133216_{name}"
    return f"S2B_{tile}_{date:%Y%m%d}_{name}"


def _properties(conv, tile, date, cover, baseline, epsg, extra):
    when = f"{date.isoformat()}T10:20:31.024000Z"
    if conv == "plain":
        return {"datetime": when, "platform": "sentinel-2b", "eo:cloud_cover": cover,
                "s2:processing_baseline": baseline, "sat:relative_orbit": 22, "proj:epsg": epsg,
                "s2:mgrs_tile": tile}
    if conv == "planetary-computer":
        return {"datetime": when, "platform": "Sentinel-2B", "instruments": ["msi"],
                "s2:mgrs_tile": tile[1:], "constellation": "Sentinel 2", "eo:cloud_cover": cover,
                "sat:orbit_state": "descending", "sat:relative_orbit": 22, "proj:epsg": epsg,
                "s2:product_type": "S2MSI2A", "s2:processing_baseline": baseline,
                "s2:product_uri": _product_uri(tile, date, baseline)}
    props = {"created": when, "platform": "sentinel-2b", "constellation": "sentinel-2",
             "instruments": ["msi"], "eo:cloud_cover": cover, "proj:epsg": epsg,
             "mgrs:utm_zone": int(tile[1:3]), "mgrs:latitude_band": tile[3],
             "mgrs:grid_square": tile[4:], "grid:code": f"MGRS-{tile[1:]}",
             "s2:product_type": "S2MSI2A", "s2:processing_baseline": baseline,
             "s2:product_uri": _product_uri(tile, date, baseline), "datetime": when,
             "processing:software": {"sentinel2-to-stac": "0.1.0"} if conv == "earth-search-v1"
             else {"sentinel-2-c1-l2a-to-stac": "v2024.02.01"}}
    props.update(extra)
    return props


def snow_over(stack, truth_path, fraction, baseline):
    """Fresh snow (bright bands, SCL 11) on about `fraction` of the clear ground outside the
    glaciers, in smooth patches (a late-season snowfall)."""
    with rasterio.open(truth_path) as src:
        glacier = src.read(1) > 0
    from scipy import ndimage
    rng = np.random.default_rng(7)
    field = ndimage.gaussian_filter(rng.standard_normal(glacier.shape), 6)
    ground = ~ndimage.binary_dilation(glacier, iterations=6) & (stack[0] > 0) & ~np.isin(stack[5], (8, 9, 10, 3))
    snow = ground & (field >= np.quantile(field[ground], 1 - fraction))
    off = 1000 if _new_baseline(baseline) else 0
    for b, refl in zip(range(5), (0.90, 0.88, 0.85, 0.78, 0.08)):
        stack[b][snow] = int(refl * 10000 + off)
    stack[5][snow] = 11
    return stack


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


def decoding_error(chip_path, imagery):
    """(largest |decoded - true| over the 10 m bands, largest |median bias| over all five
    bands, pixels compared) of an acquired chip against the scene it was cut from, decoded
    with that scene's own baseline. B12 is resampled from 20 m, so only its bias compares."""
    from scipy import ndimage

    from glacier_mapper_plugin.core.imagery import sentinel2 as s2
    with rasterio.open(chip_path) as out:
        data = out.read([1, 2, 3, 4, 5])
        scl = out.read(7)
        bounds = out.bounds
    with rasterio.open(imagery) as src:
        win = rasterio.windows.from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        dn = src.read([1, 2, 3, 4, 5], window=win, boundless=True, fill_value=0)
        truth = s2.to_reflectance(dn, src.tags()["PROCESSING_BASELINE"])
    ok = np.isfinite(data).all(axis=0) & np.isfinite(truth).all(axis=0) & ~ndimage.binary_dilation(
        np.isin(scl, s2.SCL_MASKED), iterations=2)
    diff = data[:, ok] - truth[:, ok]
    if not ok.any():
        return float("nan"), float("nan"), 0
    return float(np.abs(diff[:4]).max()), float(np.abs(np.median(diff, axis=1)).max()), int(ok.sum())

def with_dark_surfaces(imagery, out, seed=3):
    """A copy of a region scene of baseline >= 04.00 (the +1000 offset in its DNs) whose dark
    surfaces carry the slightly negative SWIR reflectance of real L2A products (Sen2Cor's
    correction overshoots over water and in shadow): B12 of water (SCL 6), dark-area and
    topographic-shadow pixels (SCL 2) and cloud shadow (SCL 3) drawn from -0.04..+0.01,
    i.e. DNs 600-1100."""
    rng = np.random.default_rng(seed)
    with rasterio.open(imagery) as src:
        stack, profile, tags = src.read(), src.profile, src.tags()
        descriptions, band_tags = src.descriptions, [src.tags(b) for b in range(1, src.count + 1)]
    if not _new_baseline(tags.get("PROCESSING_BASELINE", "05.09")):
        raise ValueError("dark surfaces need a scene with the offset in its DNs (baseline >= 04.00)")
    dark = np.isin(stack[5], (2, 3, 6)) & (stack[0] > 0)
    stack[4][dark] = np.rint(1000 + 10000 * rng.uniform(-0.04, 0.01, int(dark.sum()))).astype(stack.dtype)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(stack)
        dst.descriptions = descriptions
        dst.update_tags(**tags)
        for b, t in enumerate(band_tags, start=1):
            dst.update_tags(b, **t)
    return Path(out)
