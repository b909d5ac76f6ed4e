"""acquire_imagery against real servers on 127.0.0.1: rustac's STAC API and a range-capable
HTTP file server holding cloud-optimised GeoTIFFs built from a synthetic region."""
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import rasterio

from glacier_mapper_plugin.core.imagery import reflectance, sentinel2 as s2
from glacier_mapper_plugin.core.imagery.acquire import (AcquireOptions, acquire, glacier_grid,
                                                masked_share, read_warped)
from glacier_mapper_plugin.core.geodesy import to_lonlat
from glacier_mapper_plugin.core.labels import Inventory
from glacier_mapper_plugin.core.progress import Cancelled, Progress
from glacier_mapper_plugin.core.imagery.synthetic import make_region
from glacier_mapper_plugin.core.vector import read_layer
from tests.s2_archive import build_archive, decoding_error, scenes_for, with_dark_surfaces
from tests.servers import RangeServer, StacApi, free_port, served_items

TARGET = dt.date(2023, 9, 1)


@pytest.fixture()
def archive(served_archive):
    return served_archive


def _glaciers(inv):
    return [(i, g, inv.crs) for i, g in zip(inv.ids, inv.geometries)]


def _options(archive, **kw):
    base = dict(date=TARGET, stac_url=archive["api"].url, dem=str(archive["region"].dem),
                buffer_m=200.0, max_workers=2, http_retries=3)
    base.update(kw)
    return AcquireOptions(**base)


def test_least_cloudy_scene_over_each_glacier(archive, tmp_path):
    archive["files"].reset()
    res = acquire(_glaciers(archive["inventory"]), _options(archive), tmp_path)
    by_id = {r.id: r for r in res}
    assert [r.status for r in res] == ["ok"] * 3
    # Scene b is least cloudy overall but clouds glacier 1: glacier 1 takes scene a; the
    # others tie at 0 % masked and take b, the closer date. c is outside +-15 days.
    assert by_id["G001"].scene_id.endswith("_a") or "_a" in by_id["G001"].scene_id
    assert all("_b" in by_id[g].scene_id for g in ("G002", "G003"))
    assert by_id["G001"].date == (TARGET - dt.timedelta(days=10)).isoformat()
    assert all(r.candidates == 3 for r in res)


def test_output_grid_bands_tags_and_reflectance(archive, tmp_path):
    res = acquire(_glaciers(archive["inventory"])[1:2], _options(archive), tmp_path)
    with rasterio.open(res[0].file) as out:
        assert out.descriptions == ("B2", "B3", "B4", "B8", "B12", "DEM", "QUALITY")
        assert out.crs.to_epsg() == 32632 and out.res == (10.0, 10.0)
        assert out.transform.c % 10 == 0 and out.transform.f % 10 == 0
        assert out.dtypes[0] == "float32" and np.isnan(out.nodata)
        tags = out.tags()
        for key in ("SCENE_ID", "DATETIME", "PLATFORM", "CLOUD_COVER", "MASKED_PCT",
                    "PROCESSING_BASELINE", "SCL_MASKED_CLASSES"):
            assert tags[key]
        assert tags["PROCESSING_BASELINE"] == "05.09"
        data = out.read()
        bounds = out.bounds
    # 10 m bands are the archive's pixels, decoded with the -1000 offset of baseline 05.09.
    with rasterio.open(archive["region"].imagery_end) as src:
        win = rasterio.windows.from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        dn = src.read(4, window=win, boundless=True, fill_value=0)
    from scipy import ndimage
    cloud = ndimage.binary_dilation(data[6] == 9, iterations=2)  # SCL is 20 m: pad its edge
    ok = (dn > 0) & np.isfinite(data[3]) & ~cloud
    np.testing.assert_allclose(data[3][ok], (dn[ok].astype(np.float32) - 1000) / 10000, atol=1e-6)
    assert np.nanmax(data[5]) > 2000  # DEM in metres, bilinear
    assert set(np.unique(data[6][np.isfinite(data[6])])) <= set(s2.SCL)


def test_glacier_across_two_tiles_is_mosaicked(archive, tmp_path):
    inv = archive["inventory"]
    with rasterio.open(archive["region"].imagery_end) as src:
        w = src.width
        split_x = src.transform.c + 0.5 * w * 10
    crossing = [(i, g, inv.crs) for i, g in zip(inv.ids, inv.geometries)
                if g.bounds[0] < split_x - 200 < split_x + 200 < g.bounds[2]]
    if not crossing:  # make one: a box across the tile seam
        from shapely.geometry import box
        crossing = [("seam", box(split_x - 300, 5200000 - 1200, split_x + 300, 5200000 - 800), inv.crs)]
    res = acquire(crossing, _options(archive, buffer_m=50.0), tmp_path)
    with rasterio.open(res[0].file) as out:
        b8 = out.read(4)
    assert np.isfinite(b8).mean() > 0.95


def test_wgs84_inventory_gives_the_same_result(archive, tmp_path):
    inv = archive["inventory"]
    geo = inv.to_crs("EPSG:4326")
    a = acquire(_glaciers(inv)[2:], _options(archive), tmp_path / "utm")
    b = acquire(_glaciers(geo)[2:], _options(archive), tmp_path / "geo")
    with rasterio.open(a[0].file) as ra, rasterio.open(b[0].file) as rb:
        assert ra.transform == rb.transform and ra.shape == rb.shape
        np.testing.assert_array_equal(ra.read(4), rb.read(4))


def test_http_500_then_success(archive, tmp_path):
    archive["files"].reset(fail_next=2, fail_code=500)  # GDAL retries with backoff
    res = acquire(_glaciers(archive["inventory"])[:1], _options(archive), tmp_path)
    assert res[0].status == "ok"
    assert archive["files"].httpd.requests > 2
    archive["files"].reset()


def test_slow_server_still_works(archive, tmp_path):
    archive["files"].reset(delay=0.05)
    res = acquire(_glaciers(archive["inventory"])[:1], _options(archive), tmp_path)
    archive["files"].reset()
    assert res[0].status == "ok"


def test_server_down_is_a_clear_error(tmp_path, archive):
    with pytest.raises(ValueError, match="STAC_URL"):
        acquire(_glaciers(archive["inventory"]), AcquireOptions(
            date=TARGET, stac_url=f"http://127.0.0.1:{free_port()}", http_retries=0,
            http_timeout=2), tmp_path)


def test_empty_search_and_fully_clouded(archive, tmp_path):
    res = acquire(_glaciers(archive["inventory"]), _options(archive, date=dt.date(2019, 1, 1)), tmp_path)
    assert {r.status for r in res} == {"no scene"} and all("no sentinel-2-c1-l2a or sentinel-2-l2a item" in r.detail for r in res)
    # Only scene d (every glacier under cloud) within +-2 days of its date.
    res = acquire(_glaciers(archive["inventory"]),
                  _options(archive, date=TARGET + dt.timedelta(days=5), window_days=2), tmp_path / "d")
    assert {r.status for r in res} == {"no usable scene"}
    assert list((tmp_path / "d").glob("*.tif")) == []


class _CancelAfterFirst(Progress):
    def update(self, fraction, message=None):
        self.cancelled = True
        super().update(fraction, message)


def test_resume_after_cancel(archive, tmp_path):
    opts = _options(archive, max_workers=1)
    with pytest.raises(Cancelled):
        acquire(_glaciers(archive["inventory"]), opts, tmp_path, _CancelAfterFirst())
    first = sorted(p.name for p in tmp_path.glob("*.tif"))
    assert len(first) == 1 and not list(tmp_path.glob(".*partial*"))
    res = acquire(_glaciers(archive["inventory"]), opts, tmp_path)
    assert sorted(r.status for r in res) == ["exists", "ok", "ok"]
    # Different parameters: nothing is reused.
    res = acquire(_glaciers(archive["inventory"]), _options(archive, buffer_m=300.0), tmp_path)
    assert [r.status for r in res] == ["ok"] * 3


def test_dem_from_a_stac_collection(archive, tmp_path):
    res = acquire(_glaciers(archive["inventory"])[:1], _options(archive, dem="stac:cop-dem-glo-30"), tmp_path)
    local = acquire(_glaciers(archive["inventory"])[:1], _options(archive), tmp_path / "local")
    with rasterio.open(res[0].file) as a, rasterio.open(local[0].file) as b:
        np.testing.assert_allclose(a.read(6), b.read(6), rtol=1e-5)


def test_static_catalog_on_disk(archive, tmp_path):
    import pystac
    cat = pystac.Catalog("offline", "static copy of the archive")
    for feature in json.loads(archive["items"].read_text())["features"]:
        cat.add_item(pystac.Item.from_dict(feature))
    cat.normalize_and_save(str(tmp_path / "catalog"), pystac.CatalogType.SELF_CONTAINED)
    res = acquire(_glaciers(archive["inventory"]), _options(archive, stac_url=str(tmp_path / "catalog" / "catalog.json")),
                  tmp_path / "out")
    assert [r.status for r in res] == ["ok"] * 3


class _TokenHandler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):  # noqa: N802
        body = json.dumps({"token": "sv=2021&sig=testtoken", "msft:expiry": "2099-01-01T00:00:00Z"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_planetary_computer_signing(archive, tmp_path):
    tokens = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    threading.Thread(target=tokens.serve_forever, daemon=True).start()
    try:
        archive["files"].reset()
        res = acquire(_glaciers(archive["inventory"])[:1],
                      _options(archive, sign="planetary-computer",
                               sas_url=f"http://127.0.0.1:{tokens.server_address[1]}/token"), tmp_path)
        assert res[0].status == "ok"
        assert any("sig=testtoken" in q for q in archive["files"].httpd.queries)
    finally:
        tokens.shutdown()


def test_reads_only_what_it_needs(archive, tmp_path):
    archive["files"].reset()
    acquire(_glaciers(archive["inventory"])[:1], _options(archive, buffer_m=0.0, dem=None), tmp_path)
    sent = archive["files"].httpd.bytes_sent
    total = sum(p.stat().st_size for p in (archive["root"] / "data").glob("*_T32TA*_*.tif"))
    assert 0 < sent < 0.5 * total


def test_glacier_across_two_utm_zones(tmp_path):
    """A region on 12 E: the east tile is stored in UTM 33, the glacier grid follows its centroid."""
    region = make_region(tmp_path / "region", seed=5, size_km=2.0, n_glaciers=3,
                         origin=(727000.0, 5200000.0), clouds=False)
    with RangeServer(tmp_path) as files:
        items, _ = build_archive(region, tmp_path, files.url, scenes_for(TARGET)[:1], zone_east=32633)
        api = StacApi([items])
        try:
            inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
            lonlat = [to_lonlat(g, inv.crs) for g in inv.geometries]
            res = acquire([(i, g, "EPSG:4326") for i, g in zip(inv.ids, lonlat)],
                          AcquireOptions(date=TARGET, stac_url=api.url, buffer_m=100.0, max_workers=2),
                          tmp_path / "out")
        finally:
            api.close()
    assert [r.status for r in res] == ["ok"] * 3
    zones = set()
    for r, g in zip(res, lonlat):
        grid, outline = glacier_grid(g, 100.0, 10.0)
        with rasterio.open(r.file) as out:
            zones.add(out.crs.to_epsg())
            assert out.crs.to_epsg() == int(grid.crs.split(":")[1])
            mask = rasterio.features.rasterize([(outline, 1)], out_shape=out.shape, transform=out.transform) > 0
            b8 = out.read(4)
            scl = out.read(7)
        assert np.isfinite(b8[mask & (scl != 0)]).all()
    assert lonlat[0].bounds[0] < 12.03 and lonlat[-1].bounds[2] > 11.97


def test_masked_share_counts_scl_classes():
    scl = np.array([[4, 9, 3], [11, 0, np.nan]], np.float32)
    outline = np.ones(scl.shape, bool)
    assert masked_share(scl, outline) == pytest.approx(4 / 6)


def test_real_l2a_scl_on_a_glacier_grid(shared_data):
    """Real SCL (20 m, sen2r Barbellino) warped onto a 10 m grid keeps its classes."""
    folder = shared_data / "sen2r_barbellino"
    with rasterio.open(folder / "S2A2A_20190723_022_Barbellino_SCL_10.tif") as src:
        bounds = src.bounds
        classes = set(np.unique(src.read(1)).tolist())
    from shapely.geometry import box
    geom = to_lonlat(box(*bounds).buffer(-30), "EPSG:32632")
    grid, outline = glacier_grid(geom, 0.0, 10.0)
    data, valid = read_warped(str(folder / "S2A2A_20190723_022_Barbellino_SCL_10.tif"), grid,
                              rasterio.enums.Resampling.nearest)
    assert set(np.unique(data[valid]).astype(int)) <= classes
    assert classes <= set(s2.SCL)


# --------------------------------------------------------------------------- catalog conventions
# Each case: an archive laid out as one public catalog publishes it (tests/s2_archive.py says
# which real item each layout follows), one scene made from the region's 2015 (baseline 02.14,
# no offset) or 2023 (05.09, +1000) imagery, served by rustac + the range server. The chip must
# decode to the region's true reflectance whatever the catalog says.
CONVENTION_CASES = {
    "es-v1 2015 (flag false, baseline 02.14)": ("earth-search-v1", False, "start"),
    "es-v1 2023 (flag true, raster:bands -0.1)": ("earth-search-v1", False, "end"),
    "es-v1 2023 flag false but harmonised (#66, #71)": ("earth-search-v1", "flag false", "end"),
    "es-v1 2023 flag true but offset kept": ("earth-search-v1", "flag true", "end"),
    "es-c1 2015 (reprocessed, offset in DNs)": ("earth-search-c1", False, "start"),
    "es-c1 2023": ("earth-search-c1", False, "end"),
    "pc 2015 (B02 keys, baseline 02.14)": ("planetary-computer", False, "start"),
    "pc 2023 (baseline 05.09)": ("planetary-computer", False, "end"),
}
EXPECTED_DECISION = {  # how the offset must have been decided
    "es-v1 2023 flag false but harmonised (#66, #71)": ("no", "pixels"),
    "es-v1 2023 flag true but offset kept": ("yes", "pixels"),
    "es-c1 2015 (reprocessed, offset in DNs)": ("yes", "metadata+pixels"),
    "es-v1 2023 (flag true, raster:bands -0.1)": ("no", "metadata+pixels"),
}


@pytest.fixture(scope="module")
def convention_archives(served_archive, tmp_path_factory):
    region = served_archive["region"]
    root = tmp_path_factory.mktemp("conventions")
    apis = {}
    with RangeServer(root) as files:
        try:
            for case, (conv, lie, year) in CONVENTION_CASES.items():
                folder = root / f"c{len(apis)}"
                imagery = region.imagery_start if year == "start" else region.imagery_end
                items, _ = build_archive(region, folder, f"{files.url}/{folder.name}",
                                         [("a", TARGET, 10.0, [])], imagery=imagery,
                                         convention=conv, lie=lie)
                apis[case] = (StacApi([items]), items, imagery)
            yield dict(apis=apis, files=files, region=region)
        finally:
            for api, _, _ in apis.values():
                api.close()


@pytest.mark.parametrize("case", list(CONVENTION_CASES))
def test_each_catalog_convention_decodes_to_true_reflectance(convention_archives, case, tmp_path):
    api, _, imagery = convention_archives["apis"][case]
    inv = Inventory.from_layer(read_layer(convention_archives["region"].inventory, "inventory"))
    options = AcquireOptions(date=TARGET, stac_url=api.url, buffer_m=300.0, max_workers=1)
    files = convention_archives["files"]
    files.reset()
    if case.startswith("pc"):  # Planetary Computer hrefs are signed, as on the real API
        tokens = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
        threading.Thread(target=tokens.serve_forever, daemon=True).start()
        options.sign, options.sas_url = "planetary-computer", f"http://127.0.0.1:{tokens.server_address[1]}/token"
    try:
        res = acquire(_glaciers(inv)[1:2], options, tmp_path)
    finally:
        if case.startswith("pc"):
            tokens.shutdown()
    if case.startswith("pc"):
        assert any("sig=testtoken" in q for q in files.httpd.queries)
    r = res[0]
    assert r.status == "ok", r.detail
    pixel_err, bias, n = decoding_error(r.file, imagery)
    assert n > 1000
    assert pixel_err <= 0.005 and bias <= 0.005, (case, pixel_err, bias)
    if case in EXPECTED_DECISION:
        assert (r.offset_in_dn, r.offset_decided_by) == EXPECTED_DECISION[case]
    assert r.offset_pixels != "undecided" and np.isfinite(r.dark_dn)
    with rasterio.open(r.file) as out:
        tags = out.tags()
    assert tags["OFFSET_DECIDED_BY"] == r.offset_decided_by
    assert tags["BOA_OFFSET_IN_SOURCE_DN"] == r.offset_in_dn
    assert r.collection == ("sentinel-2-c1-l2a" if "c1" in case else "sentinel-2-l2a")
    if "but" in case:  # the contradiction is reported in the table and on the chip
        assert "contradicted by pixels" in r.detail and "contradicted by pixels" in tags["DETAIL"]


def test_contradiction_is_logged(convention_archives, tmp_path):
    api, _, _ = convention_archives["apis"]["es-v1 2023 flag false but harmonised (#66, #71)"]
    inv = Inventory.from_layer(read_layer(convention_archives["region"].inventory, "inventory"))
    warnings = []

    class Log(Progress):
        def warning(self, message):
            warnings.append(message)

    acquire(_glaciers(inv)[:1], AcquireOptions(date=TARGET, stac_url=api.url, buffer_m=200.0), tmp_path, Log())
    assert any("metadata and pixels disagree" in w and "earthsearch:boa_offset_applied=false" in w
               for w in warnings), warnings


def test_static_catalog_of_collection1(convention_archives, tmp_path):
    import pystac
    _, items, imagery = convention_archives["apis"]["es-c1 2023"]
    cat = pystac.Catalog("offline", "static copy of a Collection 1 archive")
    for feature in json.loads(items.read_text())["features"]:
        cat.add_item(pystac.Item.from_dict(feature))
    cat.normalize_and_save(str(tmp_path / "catalog"), pystac.CatalogType.SELF_CONTAINED)
    inv = Inventory.from_layer(read_layer(convention_archives["region"].inventory, "inventory"))
    res = acquire(_glaciers(inv)[:1], AcquireOptions(date=TARGET, stac_url=str(tmp_path / "catalog" / "catalog.json"),
                                                     buffer_m=200.0), tmp_path / "out")
    assert res[0].status == "ok" and res[0].collection == "sentinel-2-c1-l2a"
    pixel_err, bias, _ = decoding_error(res[0].file, imagery)
    assert pixel_err <= 0.005 and bias <= 0.005


# --------------------------------------------------------------------------- collections and snow

@pytest.fixture(scope="module")
def two_collections(served_archive, tmp_path_factory):
    """Collection 1 holds acquisition a (cloud over G001); the older collection holds the same
    acquisition a and a clear one, b, four days later."""
    region = served_archive["region"]
    root = tmp_path_factory.mktemp("collections")
    a = ("a", TARGET, 5.0, [1])  # truth raster id 1 = G001

    def build(files):
        c1, _ = build_archive(region, root / "c1", f"{files.url}/c1", [a], convention="earth-search-c1")
        v1, _ = build_archive(region, root / "v1", f"{files.url}/v1", [a, ("b", TARGET + dt.timedelta(days=4), 30.0, [])],
                              convention="earth-search-v1")
        return [c1, v1]

    with served_items(root, build) as (_, api):
        yield api, region


def test_collections_are_a_priority_list(two_collections, tmp_path):
    api, region = two_collections
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    opts = AcquireOptions(date=TARGET, stac_url=api.url, buffer_m=200.0,
                          collection="sentinel-2-c1-l2a,sentinel-2-l2a")
    res = {r.id: r for r in acquire(_glaciers(inv), opts, tmp_path)}
    # The same acquisition in both collections is one candidate, taken from Collection 1.
    assert all(r.candidates == 2 for r in res.values())
    assert res["G002"].collection == "sentinel-2-c1-l2a" and "_a" in res["G002"].scene_id
    # The least masked scene wins whichever collection holds it.
    assert res["G001"].collection == "sentinel-2-l2a" and "_b" in res["G001"].scene_id
    # Reversed priority: the shared acquisition comes from the older collection.
    opts.collection = "sentinel-2-l2a,sentinel-2-c1-l2a"
    again = acquire(_glaciers(inv)[1:2], opts, tmp_path / "reversed")
    assert again[0].collection == "sentinel-2-l2a" and "_a" in again[0].scene_id
    # One collection only.
    opts.collection = "sentinel-2-c1-l2a"
    only = acquire(_glaciers(inv)[:1], opts, tmp_path / "c1")
    assert only[0].candidates == 1 and only[0].collection == "sentinel-2-c1-l2a"


@pytest.fixture(scope="module")
def late_snow(served_archive, tmp_path_factory):
    """Two clear scenes: a (3 days from the target) after a snowfall that covers 40 % of the
    ground around the glaciers, b (6 days away) without it."""
    region = served_archive["region"]
    root = tmp_path_factory.mktemp("snow")
    scenes = [("a", TARGET - dt.timedelta(days=3), 10.0, []), ("b", TARGET + dt.timedelta(days=6), 20.0, [])]
    with served_items(root, lambda files: [build_archive(region, root, files.url, scenes, snow={"a": 0.4})[0]]) as (_, api):
        yield api, region


def test_cloud_snow_selection_prefers_less_seasonal_snow(late_snow, tmp_path):
    api, region = late_snow
    inv = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    cloud = acquire(_glaciers(inv), AcquireOptions(date=TARGET, stac_url=api.url, buffer_m=400.0), tmp_path / "c")
    snow = acquire(_glaciers(inv), AcquireOptions(date=TARGET, stac_url=api.url, buffer_m=400.0,
                                                  selection="cloud_snow"), tmp_path / "s")
    for c, s in zip(cloud, snow):
        assert "_a" in c.scene_id and "_b" in s.scene_id  # the paper: closer date; DL4GAM: less snow
        assert c.snow_pct == pytest.approx(c.cloud_only_snow_pct) and c.snow_pct > 20
        assert s.snow_pct < c.snow_pct - 15 and s.cloud_only_snow_pct == pytest.approx(c.snow_pct)
        assert s.masked_pct == pytest.approx(c.masked_pct, abs=0.01)
        with rasterio.open(s.file) as out:
            assert out.tags()["SELECTION"] == "cloud_snow"
    with pytest.raises(ValueError, match="SELECTION"):
        acquire(_glaciers(inv), AcquireOptions(date=TARGET, stac_url=api.url, selection="snow"), tmp_path)


def test_snow_selection_never_trades_cloud_for_snow(served_archive, tmp_path):
    """Scene b is snow-free but clouds G001: beyond the tolerance, so cloud_snow keeps a."""
    archive = served_archive
    res = acquire(_glaciers(archive["inventory"])[:1], _options(archive, selection="cloud_snow"), tmp_path)
    assert "_a" in res[0].scene_id


def test_changed_outline_and_missing_outline(archive, tmp_path):
    """A rerun notices an edited outline under an existing id (redone, not 'exists'); a feature
    without an outline keeps its row ('no geometry')."""
    glaciers = _glaciers(archive["inventory"])[:2]
    first = acquire(glaciers, _options(archive), tmp_path)
    assert [r.status for r in first] == ["ok", "ok"]
    edited = [(glaciers[0][0], glaciers[0][1].buffer(50), glaciers[0][2]), glaciers[1],
              ("G999", None, glaciers[1][2])]
    again = acquire(edited, _options(archive), tmp_path)
    assert [r.status for r in again] == ["ok", "exists", "no geometry"]
    with pytest.raises(ValueError, match="ID_FIELD"):
        acquire([glaciers[0], (glaciers[0][0], glaciers[1][1], glaciers[1][2])], _options(archive), tmp_path)


# --------------------------------------------------------------------------- dark water and shadow

DARK_CONVENTIONS = ("earth-search-v1", "earth-search-c1", "planetary-computer")


@pytest.fixture(scope="module")
def dark_archives(served_archive, tmp_path_factory):
    """The 2023 scene with lakes and shadow whose SWIR is slightly negative (with_dark_surfaces),
    served in the three catalog conventions, each with correct metadata."""
    region = served_archive["region"]
    root = tmp_path_factory.mktemp("dark")
    truth = with_dark_surfaces(region.imagery_end, root / "truth.tif")
    apis = {}
    with RangeServer(root) as files:
        try:
            for conv in DARK_CONVENTIONS:
                items, _ = build_archive(region, root / conv, f"{files.url}/{conv}", [("a", TARGET, 10.0, [])],
                                         imagery=truth, convention=conv)
                apis[conv] = StacApi([items])
            yield dict(apis=apis, truth=truth, region=region)
        finally:
            for api in apis.values():
                api.close()


def test_the_dark_fixture_fools_a_rule_that_looks_at_water_and_shadow(dark_archives):
    """The fixture has teeth: judged on every SCL-clear pixel (lakes and shadow included) the
    scene looks offset-free although its DNs carry the offset; on the surfaces that cannot be
    negative it does not."""
    with rasterio.open(dark_archives["truth"]) as src:
        dn = src.read()
    bands, scl = list(dn[:5]), dn[5]
    assert reflectance.pixel_evidence(bands, ~np.isin(scl, s2.SCL_MASKED)).verdict is False
    assert reflectance.pixel_evidence(bands, reflectance.evidence_mask(scl)).verdict is True


@pytest.mark.parametrize("convention", DARK_CONVENTIONS)
def test_dark_water_and_shadow_do_not_decide_the_offset(dark_archives, convention, tmp_path):
    api = dark_archives["apis"][convention]
    inv = Inventory.from_layer(read_layer(dark_archives["region"].inventory, "inventory"))
    res = acquire(_glaciers(inv), AcquireOptions(date=TARGET, stac_url=api.url, buffer_m=300.0, max_workers=1),
                  tmp_path)
    for r in res:
        assert r.status == "ok", r.detail
        pixel_err, bias, n = decoding_error(r.file, dark_archives["truth"])
        assert n > 1000 and pixel_err <= 0.005 and bias <= 0.005, (convention, r.id, pixel_err, bias)
        assert set(r.offset_decided_by.split(",")) <= {"metadata+pixels", "metadata"}, r.detail  # never overruled
        assert r.offset_in_dn == ("no" if convention == "earth-search-v1" else "yes")


def test_every_chip_of_an_item_is_decoded_alike_whichever_glaciers_a_run_holds(dark_archives, tmp_path):
    """One decision per item from the whole item: a glacier's chip is the same acquired alone
    or with its neighbours (the process's decisions forgotten in between)."""
    from glacier_mapper_plugin.core.imagery import acquire as acquire_module
    api = dark_archives["apis"]["earth-search-c1"]
    inv = Inventory.from_layer(read_layer(dark_archives["region"].inventory, "inventory"))
    options = AcquireOptions(date=TARGET, stac_url=api.url, buffer_m=300.0, max_workers=1)
    chips = []
    for glaciers, folder in ((_glaciers(inv)[2:], "alone"), (_glaciers(inv), "all")):
        acquire_module._ITEM_DECISIONS.clear()
        res = acquire(glaciers, options, tmp_path / folder)
        with rasterio.open(next(r.file for r in res if r.id == inv.ids[2])) as src:
            chips.append((src.read(), src.tags()["OFFSET_EVIDENCE"]))
    assert np.array_equal(chips[0][0], chips[1][0], equal_nan=True) and chips[0][1] == chips[1][1]


def test_dark_water_through_the_command_line(dark_archives, tmp_path):
    """The same decision through `glacier-mapper acquire`, run from another working folder."""
    import subprocess
    import sys
    from pathlib import Path
    api = dark_archives["apis"]["planetary-computer"]
    exe = Path(sys.executable).parent / "glacier-mapper"
    out = subprocess.run([str(exe), "acquire", "--inventory", f"{dark_archives['region'].inventory}|layername=inventory",
                          "--date", TARGET.isoformat(), "--stac-url", api.url, "--buffer-m", "300",
                          "--output-folder", "chips", "--output", "acquisition.gpkg", "--json"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout)["FILES"]
    assert files and all(Path(f).is_relative_to(tmp_path / "chips") for f in files)
    for f in files:
        pixel_err, bias, _ = decoding_error(f, dark_archives["truth"])
        assert pixel_err <= 0.005 and bias <= 0.005


def test_unknown_collections_are_refused_before_any_search(archive, tmp_path):
    with pytest.raises(ValueError, match=r"COLLECTION: sentinel-2-l1c not in the catalog .* \(it has .*sentinel-2-l2a"):
        acquire(_glaciers(archive["inventory"]), _options(archive, collection="sentinel-2-l1c"), tmp_path / "a")
    with pytest.raises(ValueError, match="DEM: the collection 'cop-dem-glo-90' is not in the catalog"):
        acquire(_glaciers(archive["inventory"]), _options(archive, dem="stac:cop-dem-glo-90"), tmp_path / "b")
    assert not list((tmp_path / "a").glob("*.tif")) and not list((tmp_path / "b").glob("*.tif"))


def test_a_dem_that_misses_some_glaciers_leaves_them_without_a_chip(archive, tmp_path):
    """A DEM that covers only the first glacier: the others get 'no DEM', not a chip whose
    DEM band is empty and a row that says ok."""
    inv = archive["inventory"]
    with rasterio.open(archive["region"].dem) as src:
        data, profile = src.read(1), src.profile
        first = inv.to_crs(src.crs.to_wkt()).geometries[0]
        keep = rasterio.features.geometry_mask([first.buffer(50)], data.shape, src.transform, invert=True)
    data = np.where(keep, data, np.nan).astype("float32")
    path = tmp_path / "dem_first.tif"
    with rasterio.open(path, "w", **dict(profile, dtype="float32", nodata=np.nan)) as dst:
        dst.write(data, 1)
    res = acquire(_glaciers(inv), _options(archive, dem=str(path)), tmp_path / "chips")
    assert res[0].status == "ok" and [r.status for r in res[1:]] == ["no DEM"] * (len(res) - 1)
    assert all("has no value over" in r.detail for r in res[1:])
