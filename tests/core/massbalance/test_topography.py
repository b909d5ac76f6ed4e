"""Slope and aspect from a DEM in any CRS: a geographic DEM gets each row's own metric
spacing, so the same surface in EPSG:4326 and in UTM has the same slope and aspect."""
import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rasterio.transform import from_origin

from glacier_mapper_plugin.core.massbalance.topography import Topography


def test_a_plane_over_twenty_degrees_of_latitude_has_one_slope(tmp_path):
    """z rises 0.1 m per metre eastwards on a DEM from 35 to 55 N (cells 0.001 deg wide, 0.05
    deg tall, a narrow strip so that z hardly changes along a meridian): slope atan(0.1) =
    5.71 deg and aspect 270 (facing west) on every row, not only at the centre's latitude."""
    res_x, res_y, rows, cols = 0.001, 0.05, 400, 40
    lat = 55.0 - res_y * (np.arange(rows) + 0.5)
    m_per_deg = Geod(ellps="WGS84").inv(np.zeros(rows), lat, np.ones(rows), lat)[2]
    lon = res_x * (np.arange(cols) + 0.5)
    dem = (0.1 * m_per_deg[:, None] * lon[None, :]).astype(np.float64)
    path = tmp_path / "plane.tif"
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="float64",
                       crs="EPSG:4326", transform=from_origin(0.0, 55.0, res_x, res_y)) as dst:
        dst.write(dem, 1)
    topo = Topography(path)
    _, slope, aspect = topo.window(1, rows - 1, 1, cols - 1)
    assert np.abs(slope - np.degrees(np.arctan(0.1))).max() < 0.02
    assert np.abs(aspect - 270.0).max() < 0.1


def test_the_same_dem_in_4326_and_utm(tmp_path, shared_data):
    """Hintereisferner's SRTM DEM (shared/data/oggm_hef, EPSG:4326) warped to UTM 32N: slope
    and aspect agree with the geographic original where slopes exceed 10 deg: no bias in slope
    (|mean difference| < 0.5 deg), and cell to cell within what the bilinear warp moves
    (median |d slope| < 2.5 deg, median |d aspect| < 10 deg)."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject
    src_path = shared_data / "oggm_hef" / "hef_srtm.tif"
    with rasterio.open(src_path) as src:
        assert src.crs.is_geographic
        tr, w, h = calculate_default_transform(src.crs, "EPSG:32632", src.width, src.height, *src.bounds)
        out = np.full((h, w), np.nan, np.float32)
        reproject(rasterio.band(src, 1), out, dst_transform=tr, dst_crs="EPSG:32632",
                  resampling=Resampling.bilinear, dst_nodata=np.nan)
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="float32", crs="EPSG:32632",
                       transform=tr, nodata=np.nan)
    utm = tmp_path / "hef_utm.tif"
    with rasterio.open(utm, "w", **profile) as dst:
        dst.write(out, 1)
    projected, geographic = Topography(utm), Topography(src_path)
    rng = np.random.default_rng(0)
    lons, lats = 10.70 + 0.12 * rng.random(200), 46.77 + 0.06 * rng.random(200)
    a = np.array([projected(lo, la) for lo, la in zip(lons, lats)])
    b = np.array([geographic(lo, la) for lo, la in zip(lons, lats)])
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1) & (a[:, 0] > 10)
    assert ok.sum() > 100
    d_slope = a[ok, 0] - b[ok, 0]
    d_aspect = np.abs((a[ok, 1] - b[ok, 1] + 180) % 360 - 180)
    print(f"slope: mean difference {d_slope.mean():+.2f} deg, median |d| {np.median(np.abs(d_slope)):.2f} deg; "
          f"aspect: median |d| {np.median(d_aspect):.1f} deg")
    assert abs(d_slope.mean()) < 0.5                   # no bias: the metric spacing is right
    assert np.median(np.abs(d_slope)) < 2.5 and np.median(d_aspect) < 10.0  # cell to cell: resampling


def test_why_an_outline_has_no_cell_is_told(shared_data):
    """An outline is never 'no DEM cell' without the reason: no area, off the DEM, smaller
    than a cell, or over no data (it once blamed the DEM for an empty outline)."""
    import rasterio
    from shapely.geometry import Polygon, box

    from glacier_mapper_plugin.core.massbalance.topography import Topography
    dem_path = shared_data / "oggm_hef" / "hef_srtm.tif"
    topo = Topography(dem_path)
    with rasterio.open(dem_path) as src:
        crs, (left, bottom, right, top), dx = src.crs.to_wkt(), src.bounds, abs(src.transform.a)
    x, y = (left + right) / 2, (bottom + top) / 2
    flat = Polygon([(x, y), (x + 100, y), (x + 200, y)])
    assert "no area" in topo.why_no_cell(flat, crs)
    assert "outside DEM" in topo.why_no_cell(box(right + 1000, top + 1000, right + 2000, top + 2000), crs)
    tiny = box(x + 0.1 * dx, y + 0.1 * dx, x + 0.3 * dx, y + 0.3 * dx)
    assert topo.cells(tiny, crs)[0] == [] and "smaller than one DEM cell" in topo.why_no_cell(tiny, crs)
    topo.close()
