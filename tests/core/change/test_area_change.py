from pathlib import Path
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings, strategies as st
from rasterio.transform import from_origin
from shapely.geometry import box

from glacier_mapper_plugin.core.inventories import decimal_year
from glacier_mapper_plugin.core.change.area_change import (AreaChangeOptions, area_change,
                                                    size_class_table)
from glacier_mapper_plugin.core.geodesy import ellipsoidal_area_km2
from glacier_mapper_plugin.core.labels import Inventory

X0, Y0, PX = 600000.0, 5200000.0, 10.0
T = from_origin(X0, Y0, PX, PX)


def write(path, arr, date=None, crs="EPSG:32632", transform=T, scl=False):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype=arr.dtype, crs=crs, transform=transform) as dst:
        dst.write(arr, 1)
        if date:
            dst.update_tags(DATE=date)
        if scl:
            dst.set_band_description(1, "SCL")
    return str(path)


def squares(n, size_px=20, gap=10):
    """n square glaciers in a row; returns inventory and their pixel slices."""
    geoms, slices = [], []
    for i in range(n):
        c0 = i * (size_px + gap) + 5
        geoms.append(box(X0 + c0 * PX, Y0 - (5 + size_px) * PX, X0 + (c0 + size_px) * PX, Y0 - 5 * PX))
        slices.append((slice(5, 5 + size_px), slice(c0, c0 + size_px)))
    return Inventory([f"G{i}" for i in range(n)], geoms, "EPSG:32632"), slices


def write_case(folder, n=3, name="inv"):
    """n square glaciers (inventory GeoPackage with rgi_id and inv_date) and start/end
    predictions where G0 loses two rows of its snout: (inventory, start, end) paths."""
    from glacier_mapper_plugin.core.vector import VectorLayer, write_gpkg
    folder = Path(folder)
    inv, sl = squares(n)
    start = np.zeros((40, 30 * n + 10), np.uint8)
    for s_ in sl:
        start[s_] = 1
    end = start.copy()
    end[sl[0][0].stop - 2:sl[0][0].stop, sl[0][1]] = 0
    gpkg = write_gpkg(folder / f"{name}.gpkg", [VectorLayer(
        "glaciers", inv.crs, inv.geometries, [dict(rgi_id=i, inv_date="2015-08-28") for i in inv.ids])])
    return (str(gpkg), write(folder / f"{name}_s.tif", start, "2015-08-28"),
            write(folder / f"{name}_e.tif", end, "2023-08-28"))


def shrink(arr, sl, rows_lost):
    """Remove the bottom `rows_lost` rows of a square glacier (its snout)."""
    r, c = sl
    arr[r.stop - rows_lost:r.stop, c] = 0


def test_known_rates(tmp_path):
    inv, sl = squares(3)
    start = np.zeros((40, 100), np.uint8)
    end = np.zeros_like(start)
    for s in sl:
        start[s] = 1
        end[s] = 1
    shrink(end, sl[0], 2)    # 10 % smaller
    shrink(end, sl[1], 4)    # 20 % smaller
    res = area_change(inv, [write(tmp_path / "s.tif", start, "2015-08-28")],
                      [write(tmp_path / "e.tif", end, "2023-08-28")],
                      options=AreaChangeOptions(trim_percent=0))
    dt = decimal_year(__import__("datetime").date(2023, 8, 28)) - decimal_year(__import__("datetime").date(2015, 8, 28))
    rates = [r["rate_pct_yr"] for r in res.glaciers]
    assert rates == pytest.approx([-10 / dt, -20 / dt, 0.0], abs=1e-6)
    a = res.glaciers[0]
    assert a["area_start_km2"] == pytest.approx(ellipsoidal_area_km2(inv.geometries[0], inv.crs), rel=1e-9)
    assert a["area_end_km2"] == pytest.approx(0.9 * a["area_start_km2"], rel=1e-9)
    assert a["recall"] == 1.0 and a["masked_start"] == 0 and a["kept"]
    reg = res.regional
    assert reg["rate_pct_yr"] == pytest.approx(-10 / dt, abs=1e-6)  # equal areas: mean of rates
    assert reg["n_kept"] == 3 and reg["area_share_kept"] == pytest.approx(1.0)


def test_filters_and_reasons(tmp_path):
    inv, sl = squares(4)
    start = np.zeros((40, 130), np.uint8)
    for s in sl:
        start[s] = 1
    start[sl[1][0].start:sl[1][0].start + 10, sl[1][1]] = 0   # G1: recall 0.5
    start[sl[3]] = 0                                          # G3: nothing predicted
    end = start.copy()
    scl = np.full(start.shape, 4, np.uint8)
    scl[sl[2][0].start:sl[2][0].start + 6, sl[2][1]] = 9      # G2: 30 % cloud at start
    res = area_change(inv, [write(tmp_path / "s.tif", start, "2015-08-28")],
                      [write(tmp_path / "e.tif", end, "2023-08-28")],
                      [write(tmp_path / "q.tif", scl, scl=True)], None,
                      AreaChangeOptions(trim_percent=0))
    reasons = [r["filter_reason"] for r in res.glaciers]
    assert reasons == ["", "recall < 0.75", "masked_start > 0.2", "no glacier predicted at the start date"]
    assert [r["kept"] for r in res.glaciers] == [True, False, False, False]
    assert res.glaciers[2]["masked_start"] == pytest.approx(0.3)
    assert res.filter_counts == {"kept": 1, "recall < 0.75": 1, "masked_start > 0.2": 1,
                                 "no glacier predicted at the start date": 1}


def test_recall_correction_of_masked_pixels(tmp_path):
    inv, sl = squares(1)
    start = np.zeros((40, 40), np.uint8)
    start[sl[0]] = 1
    end = start.copy()
    end[sl[0][0].start:sl[0][0].start + 4, sl[0][1]] = 0     # cloud hides the top 4 rows (20 %)
    scl = np.full(start.shape, 4, np.uint8)
    scl[sl[0][0].start:sl[0][0].start + 4, sl[0][1]] = 9
    res = area_change(inv, [write(tmp_path / "s.tif", start, "2015-08-28")],
                      [write(tmp_path / "e.tif", end, "2023-08-28")], None,
                      [write(tmp_path / "q.tif", scl, scl=True)], AreaChangeOptions(trim_percent=0))
    g = res.glaciers[0]
    assert g["masked_end"] == pytest.approx(0.2) and g["kept"]
    assert g["area_end_km2"] == pytest.approx(g["area_start_km2"])  # recall 1 on the rest
    assert g["rate_pct_yr"] == pytest.approx(0.0)


def test_trim_drops_extremes_from_both_tails(tmp_path):
    inv, sl = squares(40, size_px=10, gap=2)
    start = np.zeros((25, 490), np.uint8)
    end = np.zeros_like(start)
    for i, s in enumerate(sl):
        start[s] = 1
        end[s] = 1
        shrink(end, s, i % 5)
    res = area_change(inv, [write(tmp_path / "s.tif", start, "2015-01-01")],
                      [write(tmp_path / "e.tif", end, "2020-01-01")],
                      options=AreaChangeOptions(trim_percent=5))
    trimmed = [r for r in res.glaciers if r["filter_reason"].startswith("among")]
    assert len(trimmed) == 2
    rates = sorted(r["rate_pct_yr"] for r in res.glaciers)
    assert sorted(r["rate_pct_yr"] for r in trimmed) == [rates[0], rates[-1]]


def test_wgs84_inventory_and_zone_boundary(tmp_path):
    """A glacier across 12 E (UTM 32/33): the same area from rasters in either zone."""
    from pyproj import Transformer
    lon_lat = box(11.99, 46.80, 12.01, 46.81)
    inv = Inventory(["X"], [lon_lat], "EPSG:4326")
    truth = ellipsoidal_area_km2(lon_lat, "EPSG:4326")
    areas = []
    for epsg in (32632, 32633):
        tr = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
        xs, ys = zip(*[tr.transform(x, y) for x, y in lon_lat.exterior.coords])
        t = from_origin(min(xs) - 100, max(ys) + 100, 10, 10)
        w, h = int((max(xs) - min(xs) + 200) / 10), int((max(ys) - min(ys) + 200) / 10)
        ones = np.ones((h, w), np.uint8)
        p0 = write(tmp_path / f"s{epsg}.tif", ones, "2016-09-01", f"EPSG:{epsg}", t)
        p1 = write(tmp_path / f"e{epsg}.tif", ones, "2023-09-01", f"EPSG:{epsg}", t)
        res = area_change(inv, [p0], [p1], options=AreaChangeOptions(trim_percent=0))
        areas.append(res.glaciers[0]["area_start_km2"])
    assert areas[0] == pytest.approx(truth, rel=0.01)
    assert areas[1] == pytest.approx(truth, rel=0.01)


def test_per_glacier_chips_are_not_double_counted(tmp_path):
    inv, sl = squares(2)
    full = np.zeros((40, 70), np.uint8)
    for s in sl:
        full[s] = 1
    chips = []
    for i, (cols, name) in enumerate(((slice(0, 50), "a"), (slice(20, 70), "b"))):
        t = from_origin(X0 + cols.start * PX, Y0, PX, PX)
        chips.append(write(tmp_path / f"{name}.tif", np.ascontiguousarray(full[:, cols]), "2015-08-28", transform=t))
    ends = [write(tmp_path / f"e{i}.tif", rasterio.open(c).read(1), "2023-08-28",
                  transform=rasterio.open(c).transform) for i, c in enumerate(chips)]
    res = area_change(inv, chips, ends, options=AreaChangeOptions(trim_percent=0))
    for g, geom in zip(res.glaciers, inv.geometries):
        assert g["area_start_km2"] == pytest.approx(ellipsoidal_area_km2(geom, inv.crs), rel=1e-9)


def test_ensemble_sigma(tmp_path):
    inv, sl = squares(1)
    base = np.zeros((40, 40), np.uint8)
    base[sl[0]] = 1
    members0, members1 = [], []
    for m, lost in enumerate((0, 2, 4)):
        a = base.copy()
        shrink(a, sl[0], lost)
        members0.append([write(tmp_path / f"s{m}.tif", a, "2015-08-28")])
        members1.append([write(tmp_path / f"e{m}.tif", base, "2023-08-28")])
    res = area_change(inv, members0[0], members1[0],
                      options=AreaChangeOptions(trim_percent=0, outline_uncertainty_px=0),
                      start_ensemble=members0, end_ensemble=members1)
    g = res.glaciers[0]
    area = g["area_inventory_km2"]
    s0 = np.std([area, 0.9 * area, 0.8 * area], ddof=1)
    assert g["area_start_sigma_km2"] == pytest.approx(s0, rel=1e-6)
    assert g["area_end_sigma_km2"] == pytest.approx(0.0, abs=1e-12)
    dt = g["year_end"] - g["year_start"]
    assert g["rate_sigma_km2_yr"] == pytest.approx(s0 / dt, rel=1e-6)
    assert "rate_sigma_pct_yr" in g and "snr" in g


def test_unknown_years_are_an_error(tmp_path):
    inv, sl = squares(1)
    a = np.zeros((40, 40), np.uint8)
    a[sl[0]] = 1
    with pytest.raises(ValueError, match="START_YEAR"):
        area_change(inv, [write(tmp_path / "s.tif", a)], [write(tmp_path / "e.tif", a, "2023-01-01")])


def test_size_classes():
    rows = [dict(area_inventory_km2=a, kept=True, rate_pct_yr=r) for a, r in
            ((0.15, -2.0), (0.3, -1.5), (0.35, -1.0), (25.0, -0.5), (0.05, -3.0))]
    table = size_class_table(rows)
    by = {t["size_class"]: t for t in table}
    assert by["[0.2, 0.5)"]["n"] == 2 and by["[0.2, 0.5)"]["rate_pct_yr_median"] == pytest.approx(-1.25)
    assert by[">= 20"]["n"] == 1 and by["< 0.1"]["n"] == 1
    assert sum(t["area_share"] for t in table) == pytest.approx(1.0)


def test_odd_trim_takes_the_farther_tail(tmp_path):
    inv, sl = squares(10, size_px=10, gap=2)
    start = np.zeros((25, 130), np.uint8)
    end = np.zeros_like(start)
    lost = [1, 1, 1, 1, 1, 2, 2, 2, 2, 9]   # one glacier far below the others
    for s, n in zip(sl, lost):
        start[s] = 1
        end[s] = 1
        shrink(end, s, n)
    res = area_change(inv, [write(tmp_path / "s.tif", start, "2015-01-01")],
                      [write(tmp_path / "e.tif", end, "2020-01-01")],
                      options=AreaChangeOptions(trim_percent=10))
    assert [r["id"] for r in res.glaciers if not r["kept"]] == ["G9"]


def test_buffer_method_uncertainty(tmp_path):
    """+-0.5 pixel along a 200 m x 200 m outline: 0.8 km * 5 m = 0.004 km2 at each date."""
    inv, sl = squares(1)
    a = np.zeros((40, 40), np.uint8)
    a[sl[0]] = 1
    res = area_change(inv, [write(tmp_path / "s.tif", a, "2015-08-28")],
                      [write(tmp_path / "e.tif", a, "2023-08-28")], options=AreaChangeOptions(trim_percent=0))
    g = res.glaciers[0]
    assert g["area_start_sigma_km2"] == pytest.approx(0.004, rel=0.01)
    dt = g["year_end"] - g["year_start"]
    assert g["rate_sigma_km2_yr"] == pytest.approx(np.sqrt(2) * 0.004 / dt, rel=0.01)
    assert "rate_sigma_pct_yr" in res.regional
    none = area_change(inv, [str(tmp_path / "s.tif")], [str(tmp_path / "e.tif")],
                       options=AreaChangeOptions(trim_percent=0, outline_uncertainty_px=0))
    assert "rate_sigma_km2_yr" not in none.glaciers[0]


# --------------------------------------------------------------------------- issue 13: nonsense refused

def test_outline_beyond_the_raster_edge_counts_as_masked(tmp_path):
    """A glacier whose outline runs off the raster: the unseen part is masked, so MAX_MASKED
    filters it instead of a spurious rate passing every filter."""
    from shapely.geometry import box as sbox
    inv, sl = squares(2)
    g0 = inv.geometries[0]
    left = g0.bounds[0]
    # Glacier 0 extends 40 px west of the raster's left edge (the raster starts at X0).
    inv.geometries[0] = sbox(X0 - 40 * PX, g0.bounds[1], g0.bounds[2], g0.bounds[3])
    start = np.zeros((40, 70), np.uint8)
    for s_ in sl:
        start[s_] = 1
    start[sl[0][0], 0:sl[0][1].start] = 1
    s = write(tmp_path / "s.tif", start, "2015-08-28")
    e = write(tmp_path / "e.tif", start, "2023-08-28")
    res = area_change(inv, [s], [e], options=AreaChangeOptions(trim_percent=0))
    g = {r["id"]: r for r in res.glaciers}
    assert g["G0"]["masked_start"] > 0.5 and not g["G0"]["kept"] and "masked" in g["G0"]["filter_reason"]
    assert g["G1"]["masked_start"] == 0 and g["G1"]["kept"]
    assert left >= X0


def test_a_dem_or_a_scene_is_not_a_prediction(tmp_path, region):
    inv, _ = squares(1)
    dem = write(tmp_path / "dem.tif", np.full((40, 40), 2800.5, np.float32), "2015-08-28")
    with pytest.raises(ValueError, match="START: values from 2800.5 to 2800.5 are not a probability"):
        area_change(inv, [dem], [dem])
    from glacier_mapper_plugin.core.vector import read_layer
    on_scene = Inventory.from_layer(read_layer(region.inventory, "inventory"))
    with pytest.raises(ValueError, match="START has 6 bands"):
        area_change(on_scene, [str(region.imagery_start)], [str(region.imagery_end)])
    with pytest.raises(ValueError, match="INVENTORY and START do not overlap: .*START covers 10.7"):
        area_change(inv, [str(region.imagery_start)], [str(region.imagery_end)])  # squares lie elsewhere
    dn = write(tmp_path / "dn.tif", np.full((40, 40), 4000, np.uint16), "2015-08-28")
    with pytest.raises(ValueError, match="END: integer values from 4000 to 4000 are neither"):
        area_change(inv, [write(tmp_path / "ok.tif", np.ones((40, 40), np.uint8), "2015-08-28")], [dn])


def test_percent_and_mask_are_told_by_metadata_not_by_the_maximum(tmp_path):
    """A uint8 percent raster (as segment_glaciers writes it) whose largest value is 1 % is a
    probability of 1 %, not a mask full of glacier."""
    from glacier_mapper_plugin.core.segmentation.evaluate import read_prediction
    path = write(tmp_path / "p.tif", np.ones((10, 10), np.uint8))
    with rasterio.open(path, "r+") as dst:
        dst.set_band_description(1, "glacier probability (%)")
    with rasterio.open(path) as src:
        glacier, _ = read_prediction(src, 0.5)
    assert not glacier.any()
    with rasterio.open(write(tmp_path / "m.tif", np.ones((10, 10), np.uint8))) as src:
        assert read_prediction(src, 0.5)[0].all()  # unlabelled 0/1: a mask


def test_trim_rounds_half_up_and_nan_rates_never_reach_the_sums(tmp_path):
    from glacier_mapper_plugin.core.change.area_change import _regional, _trim
    rows = [dict(id=i, kept=True, filter_reason="", rate_pct_yr=float(i), rate_km2_yr=-0.01,
                 area_start_km2=1.0, area_end_km2=0.9, area_inventory_km2=1.0) for i in range(10)]
    _trim(rows, 5.0)  # 10 x 5 % = 0.5 glaciers: one is dropped (round half up)
    assert sum(not r["kept"] for r in rows) == 1
    inv, sl = squares(2)
    start = np.zeros((40, 70), np.uint8)
    for s_ in sl:
        start[s_] = 1
    end = start.copy()
    end[sl[1]] = 0
    q = np.full(start.shape, 4, np.uint8)
    q[sl[1]] = 9  # G1 fully under cloud at the end date
    res = area_change(inv, [write(tmp_path / "s.tif", start, "2015-08-28")],
                      [write(tmp_path / "e.tif", end, "2023-08-28")], None,
                      [write(tmp_path / "q.tif", q, scl=True)], AreaChangeOptions(trim_percent=0, max_masked=1.0))
    g = {r["id"]: r for r in res.glaciers}
    assert not g["G1"]["kept"] and "no rate" in g["G1"]["filter_reason"]
    assert np.isfinite(res.regional["rate_pct_yr"]) and res.regional["n_kept"] == 1
    assert _regional(rows)["n_kept"] == 9


def test_ensembles_with_per_glacier_chips_name_real_parameters(tmp_path):
    inv, _ = squares(1)
    p = write(tmp_path / "p.tif", np.ones((40, 40), np.uint8), "2015-08-28")
    with pytest.raises(ValueError, match="START_ENSEMBLE/END_ENSEMBLE take one raster per member"):
        area_change(inv, [p, p], [p, p], start_ensemble=[[p]], end_ensemble=[[p]])



# --------------------------------------------------------------------------- overlapping chips

def _scene_and_chips(folder, clouds, seed=0):
    """A whole-scene prediction and one chip per glacier (the same truth on the same grid),
    each with its SCL quality raster; clouds[k] = rows of cloud (SCL 9) over glacier k's
    outline on raster k (0: the scene, 1..3: the chips). The end date loses the snout of G0."""
    from rasterio.windows import Window, transform as window_transform
    inv, sl = squares(3)
    start = np.zeros((40, 100), np.uint8)
    for s_ in sl:
        start[s_] = 1
    end = start.copy()
    shrink(end, sl[0], 2)
    rasters = {}
    for date, pred in (("2015-08-28", start), ("2023-08-28", end)):
        out = []
        for k in range(4):
            win = Window(0, 0, 100, 40) if k == 0 else Window(sl[k - 1][1].start - 3, 2, 26, 26)
            tr = window_transform(win, T)
            r0, c0 = win.row_off, win.col_off
            p = pred[r0:r0 + win.height, c0:c0 + win.width].copy()
            q = np.full(p.shape, 4, np.uint8)
            glaciers = range(3) if k == 0 else [k - 1]
            for g in glaciers:
                rows = clouds[k][g] if k == 0 else clouds[k]
                r, c = sl[g]
                q[r.start - r0:r.start - r0 + rows, c.start - c0:c.stop - c0] = 9
            name = "scene" if k == 0 else f"G{k - 1}"
            out.append((write(folder / f"{name}_{date[:4]}.tif", p, date, transform=tr),
                        write(folder / f"{name}_{date[:4]}_scl.tif", q, date, transform=tr, scl=True)))
        rasters[date[:4]] = out
    return inv, rasters


def _rows(inv, rasters, order):
    s = [rasters["2015"][k] for k in order]
    e = [rasters["2023"][k] for k in order]
    res = area_change(inv, [r for r, _ in s], [r for r, _ in e], [q for _, q in s], [q for _, q in e],
                      AreaChangeOptions(trim_percent=0))
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in res.glaciers]


def test_each_glacier_is_measured_on_the_chip_that_shows_it_best(tmp_path):
    """The issue's case: a whole-scene prediction listed first, cloudy over G1, and G1's own
    clear chip: G1 is measured on its chip (not filtered for cloud), the table names it, and
    listing the chips in any order changes no row."""
    scene_clouds = [0, 8, 0]                                 # 8 of 20 rows of G1 cloudy on the scene
    inv, rasters = _scene_and_chips(tmp_path, [scene_clouds, 3, 0, 5])
    rows = _rows(inv, rasters, [0, 1, 2, 3])
    by = {r["id"]: r for r in rows}
    assert by["G1"]["chip_start"] == "G1_2015.tif" and by["G1"]["chip_end"] == "G1_2023.tif"
    assert by["G1"]["masked_start"] == 0 and by["G1"]["kept"]
    assert by["G0"]["chip_start"] == "scene_2015.tif"        # its chip has 3 cloudy rows, the scene none
    assert by["G2"]["chip_start"] == "scene_2015.tif"
    for order in ([3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]):
        assert _rows(inv, rasters, order) == rows


@settings(max_examples=25, deadline=None)
@given(scene=st.tuples(*[st.integers(0, 20)] * 3), chips=st.tuples(*[st.integers(0, 20)] * 3),
       order=st.permutations([0, 1, 2, 3]))
def test_chip_choice_never_depends_on_the_order(scene, chips, order):
    """Any clouds on the scene and on the chips (ties included: equal masked shares go to the
    raster with more outline pixels, then the file name): the least masked raster is chosen
    and the order of the list changes no row."""
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as folder:
        inv, rasters = _scene_and_chips(Path(folder), [list(scene), *chips])
        rows = _rows(inv, rasters, [0, 1, 2, 3])
        assert _rows(inv, rasters, list(order)) == rows
        for g, r in enumerate(rows):
            assert r["masked_start"] == pytest.approx(min(scene[g], chips[g]) / 20)
            if scene[g] != chips[g]:
                assert r["chip_start"] == ("scene_2015.tif" if scene[g] < chips[g] else f"G{g}_2015.tif")


def _with_source(path, source):
    """A prediction tagged as segment_glaciers tags it: the imagery it was made from."""
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(SOURCE=Path(source).name, SOURCE_PATH=str(Path(source).resolve()))
    return path


def test_the_imagery_quality_band_masks_clouds_without_being_asked(tmp_path):
    """A cloud over G2 at the end date (predicted as not glacier, as a cloud is): told by
    END_QUALITY or found through the prediction's SOURCE_PATH, the same result, and the
    cloudy glacier is filtered, not measured as retreat."""
    from glacier_mapper_plugin.core.progress import Progress
    inv, sl = squares(3)
    start = np.zeros((40, 100), np.uint8)
    for s in sl:
        start[s] = 1
    end = start.copy()
    end[sl[2][0].start:sl[2][0].start + 8, sl[2][1]] = 0      # cloud read as bare ground
    scl = np.full(start.shape, 4, np.uint8)
    scl[sl[2][0].start:sl[2][0].start + 8, sl[2][1]] = 9      # ... which the SCL band knows
    chip = write(tmp_path / "chip_2023.tif", scl, "2023-08-28", scl=True)
    s = write(tmp_path / "s.tif", start, "2015-08-28")
    e = _with_source(write(tmp_path / "e.tif", end, "2023-08-28"), chip)
    opts = AreaChangeOptions(trim_percent=0)
    told = area_change(inv, [s], [e], None, [chip], opts)
    messages = []

    class Log(Progress):
        def info(self, message):
            messages.append(message)

        def warning(self, message):
            messages.append("WARNING " + message)

    found = area_change(inv, [s], [e], options=opts, progress=Log())
    assert found.glaciers == told.glaciers and found.regional == told.regional
    assert found.glaciers[2]["masked_end"] == pytest.approx(0.4) and not found.glaciers[2]["kept"]
    assert found.quality_sources["END"].startswith("the SCL band of the imagery")
    assert any("END_QUALITY not given: masking clouds" in m for m in messages)
    assert any(m.startswith("WARNING START_QUALITY not given") for m in messages)  # s.tif names none
    # Moved together with its chip (another folder, SOURCE_PATH stale): found by its SOURCE name.
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in ("chip_2023.tif", "e.tif"):
        (tmp_path / f).rename(moved / f)
    again = area_change(inv, [s], [str(moved / "e.tif")], options=opts)
    assert again.glaciers[2]["masked_end"] == pytest.approx(0.4)
    # Without the SCL, the cloud is measured as retreat: what the default now prevents.
    (moved / "chip_2023.tif").unlink()
    blind = area_change(inv, [s], [str(moved / "e.tif")], options=opts)
    assert blind.glaciers[2]["kept"] and blind.glaciers[2]["rate_pct_yr"] < -4
    assert blind.quality_sources["END"].startswith("none")


def test_implausible_rates_are_said_in_the_result_and_the_report(tmp_path):
    """The same map as START and END (issue 25: '0.00 %/yr for everything'), and a glacier
    that loses half its area a year: said in the log, the result and the report."""
    from glacier_mapper_plugin.core.change.report import write_report
    inv, sl = squares(3)
    start = np.zeros((40, 100), np.uint8)
    for s_ in sl:
        start[s_] = 1
    same = write(tmp_path / "s.tif", start, "2022-08-28")
    twice = area_change(inv, [same], [write(tmp_path / "e.tif", start, "2023-08-28")],
                        options=AreaChangeOptions(trim_percent=0))
    assert any("exactly the same area at both dates" in w for w in twice.warnings)
    end = start.copy()
    shrink(end, sl[0], 10)  # half of G0 in one year
    fast = area_change(inv, [same], [write(tmp_path / "e2.tif", end, "2023-08-28")],
                       options=AreaChangeOptions(trim_percent=0))
    assert any("1 kept glacier(s) change faster than a glacier can" in w and "G0" in w for w in fast.warnings)
    assert any("regional rate" in w for w in fast.warnings)  # -16.7 %/yr for the region
    report = write_report(tmp_path / "r.html", fast, {}).read_text()
    assert report.count("<b>Warning:</b>") == len(fast.warnings) == 2
    slow = start.copy()
    shrink(slow, sl[0], 2)  # a tenth of G0 in eight years
    plausible = area_change(inv, [same], [write(tmp_path / "e3.tif", slow, "2023-08-28")],
                            options=AreaChangeOptions(trim_percent=0, start_year=2015.0))
    assert plausible.warnings == []


def _cloudy_case(folder, height=90):
    """Five glaciers over 90 rows (one cut by the raster's bottom edge), a probability map
    with a lake-dark hole and noise, a cloud (SCL 9) over parts of two glaciers."""
    rng = np.random.default_rng(11)
    geoms, truth = [], np.zeros((height, 120), bool)
    for i, (r0, c0, h, w) in enumerate([(3, 4, 20, 30), (30, 40, 25, 20), (60, 8, 40, 25), (10, 70, 50, 30),
                                        (70, 80, 12, 12)]):
        geoms.append(box(X0 + c0 * PX, Y0 - (r0 + h) * PX, X0 + (c0 + w) * PX, Y0 - r0 * PX))
        truth[r0:r0 + h, c0:c0 + w] = True
    prob = np.clip(truth * 0.8 + rng.normal(0.1, 0.2, truth.shape), 0, 1).astype(np.float32)
    prob[35:40, 45:50] = 0.05  # a lake on the glacier
    scl = np.full(truth.shape, 4, np.uint8)
    scl[20:45, 60:100] = 9
    inv = Inventory([f"G{i}" for i in range(5)], geoms, "EPSG:32632")
    return (inv, write(folder / "p.tif", prob, "2016-08-01"), write(folder / "q.tif", scl, scl=True))


@settings(max_examples=12, deadline=None)
@given(rows=st.integers(1, 95))
def test_counting_in_blocks_of_rows_changes_nothing(tmp_path_factory, rows):
    """Whatever the block height (1 row, a non-divisor, more than the raster), the counts are
    those of the whole raster at once: pixels, masked, predicted, and the part beyond the edge."""
    from glacier_mapper_plugin.core.change import area_change as module
    folder = tmp_path_factory.mktemp("blocks")
    inv, prob, scl = _cloudy_case(folder)
    index = module.InventoryIndex(inv)
    whole = module.count_pixels(prob, index, scl, threshold=0.5)
    saved = module.COUNT_ROWS
    try:
        module.COUNT_ROWS = rows
        blocks = module.count_pixels(prob, index, scl, threshold=0.5)
    finally:
        module.COUNT_ROWS = saved
    for name in ("pixels", "masked", "predicted", "outside"):
        assert np.array_equal(getattr(whole, name), getattr(blocks, name)), name
    assert whole.masked.sum() > 0 and whole.outside.sum() > 0 and whole.predicted.sum() > 0


def test_counting_memory_does_not_grow_with_the_raster(tmp_path):
    """The same glaciers on a raster 10 times longer (no glacier on the rest): peak
    Python-heap memory stays that of a few blocks, not the raster."""
    import tracemalloc
    from glacier_mapper_plugin.core.change import area_change as module
    inv, small, _ = _cloudy_case(tmp_path)
    with rasterio.open(small) as src:
        prob, tags = src.read(1), src.tags()
    tall = np.zeros((prob.shape[0] * 30, prob.shape[1] * 10), np.float32)
    tall[:prob.shape[0], :prob.shape[1]] = prob
    big = write(tmp_path / "big.tif", tall, tags["DATE"])
    size = tall.nbytes
    del tall
    index = module.InventoryIndex(inv)
    peaks, counts = [], []
    saved = module.COUNT_ROWS
    try:
        module.COUNT_ROWS = 30  # a block is 1/90 of the raster
        for raster in (small, big):
            tracemalloc.start()
            counts.append(module.count_pixels(raster, index, threshold=0.5).predicted)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    finally:
        module.COUNT_ROWS = saved
    assert np.array_equal(counts[0], counts[1])
    assert peaks[1] < size / 10, (peaks, size)
