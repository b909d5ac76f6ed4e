import datetime as dt

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from glacier_mapper_plugin.core.massbalance.climate import MonthlyClimate
from glacier_mapper_plugin.core.massbalance.model import (MBMOptions, Site, aggregated_objective,
                                                     cv_splits, design, fit, load_mbm,
                                                     predict_rows, save_mbm, MBMHeader,
                                                     site_month_features)
from glacier_mapper_plugin.core.massbalance.stakes import Observation
from glacier_mapper_plugin.core.massbalance.topography import Topography


def test_objective_gradient_matches_hand_computation():
    # Two observations: rows 0-2 sum to obs 0 (point), rows 3-4 average two cells (w=0.5).
    group = np.array([0, 0, 0, 1, 1])
    weight = np.array([1, 1, 1, 0.5, 0.5])
    target = np.array([1.0, -2.0])
    preds = np.array([0.5, 0.25, 0.5, -1.0, -2.0])
    grad, hess = aggregated_objective(group, weight, target)(preds)
    # obs 0: S = 1.25, r = 0.25 -> grad 0.25 for each row; obs 1: S = -1.5, r = 0.5 -> 0.25
    np.testing.assert_allclose(grad, [0.25, 0.25, 0.25, 0.25, 0.25])
    np.testing.assert_allclose(hess, [3, 3, 3, 0.5, 0.5])  # w * sum(w) of the observation
    # And it is the derivative of 0.5 * sum (S - y)^2, checked numerically.
    def loss(p):
        s = np.bincount(group, weights=weight * p, minlength=2)
        return 0.5 * np.sum((s - target) ** 2)
    eps = 1e-6
    num = [(loss(preds + eps * np.eye(5)[i]) - loss(preds - eps * np.eye(5)[i])) / (2 * eps) for i in range(5)]
    np.testing.assert_allclose(grad, num, atol=1e-6)


def _climate(years=range(2000, 2011)):
    months = [(y, m) for y in years for m in range(1, 13)]
    t = np.array([10 * np.sin((m - 4) / 12 * 2 * np.pi) for _, m in months], np.float32)
    temp = np.broadcast_to(t[:, None, None], (len(months), 2, 2)).copy()
    prcp = np.full((len(months), 2, 2), 100.0, np.float32)
    return MonthlyClimate(months, np.array([10.0, 11.0]), np.array([47.0, 46.0]),
                          {"temperature": temp, "precipitation": prcp}, np.full((2, 2), 2000.0, np.float32))


def test_features_lapse_rate_and_elevation_difference():
    c = _climate()
    x = site_month_features(c, [Site(10.1, 46.9, 3000.0, 20.0, 90.0)], [(2005, 7)], MBMOptions(lapse_rate=-0.0065))
    assert x[0, 0] == pytest.approx(c.variables["temperature"][c.index(2005, 7), 0, 0] - 6.5)
    assert x[0, 2] == pytest.approx(1000.0) and x[0, 3] == 3000.0
    assert x[0, 5] == pytest.approx(1.0, abs=1e-6) and x[0, 7] == 9  # July = month 9 from October


def test_topography_from_a_hand_made_dem(tmp_path):
    z = np.tile(np.arange(20, dtype=np.float32) * 10.0, (20, 1))  # rises 10 m per 10 m eastwards
    with rasterio.open(tmp_path / "dem.tif", "w", driver="GTiff", width=20, height=20, count=1,
                       dtype="float32", crs="EPSG:32632", transform=from_origin(600000, 5200200, 10, 10)) as d:
        d.write(z, 1)
    topo = Topography(tmp_path / "dem.tif")
    from pyproj import Transformer
    lon, lat = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True).transform(600105, 5200105)
    slope, aspect = topo(lon, lat)
    assert slope == pytest.approx(45.0, abs=0.5) and aspect == pytest.approx(270.0, abs=1)  # faces west
    sites, _ = topo.cells(box(600050, 5200050, 600150, 5200150), "EPSG:32632")
    assert len(sites) == 100 and all(s.slope == pytest.approx(45, abs=0.5) for s in sites)


def test_cv_never_shares_a_glacier_or_year():
    obs = [Observation(g, "p", 0, 0, 0, dt.date(y - 1, 10, 1), dt.date(y, 9, 30), 0.0, "annual")
           for g in "ABCD" for y in (2001, 2002, 2003)]
    folds, kind = cv_splits(obs, 3)
    assert kind == "glaciers"
    for f in folds:
        test = {obs[i].glacier for i in f}
        train = {o.glacier for i, o in enumerate(obs) if i not in f}
        assert not test & train
    one = [o for o in obs if o.glacier == "A"]
    folds, kind = cv_splits(one, 5)
    assert kind == "years" and len(folds) == 3
    assert all(len({one[i].year for i in f}) == 1 for f in folds)


def test_machine_learns_seasonal_sums_and_round_trips(tmp_path):
    """Synthetic truth: monthly balance = 0.001*prcp (snow) below 0 deg C, -0.005*T*30 above.
    Trained on seasonal sums only, the model recovers annual sums it never saw."""
    c = _climate()
    truth = lambda x: np.where(x[:, 0] < 0, x[:, 1] * 0.001, -0.15 * x[:, 0])  # noqa: E731
    obs = []
    rng = np.random.default_rng(0)
    for y in range(2001, 2011):
        for z in rng.uniform(2500, 3500, 6):
            for period, d0, d1 in (("winter", dt.date(y - 1, 10, 1), dt.date(y, 4, 30)),
                                   ("summer", dt.date(y, 5, 1), dt.date(y, 9, 30)),
                                   ("annual", dt.date(y - 1, 10, 1), dt.date(y, 9, 30))):
                o = Observation("G", f"z{int(z)}", 46.9, 10.1, z, d0, d1, 0.0, period)
                x = site_month_features(c, [Site(10.1, 46.9, z)], o.months(), MBMOptions())
                o.balance = float(truth(x).sum())
                obs.append(o)
    seasonal = [o for o in obs if o.period != "annual"]
    annual = [o for o in obs if o.period == "annual"]
    opts = MBMOptions(n_estimators=200, max_depth=3, learning_rate=0.1)
    d = design(seasonal, c, opts)
    booster = fit(d, opts)
    da = design(annual, c, opts)
    pred = np.bincount(da.group, weights=da.weight * predict_rows(booster, da.x), minlength=len(da.target))
    assert np.sqrt(np.mean((pred - da.target) ** 2)) < 0.15 * np.std(da.target) + 0.05
    save_mbm(tmp_path / "m.json", booster, MBMHeader(options=vars(opts), features=[], extra_variables=[]))
    back, header = load_mbm(tmp_path / "m.json")
    np.testing.assert_allclose(predict_rows(back, da.x), predict_rows(booster, da.x), rtol=1e-6)
    assert header.format == "glacier-mapper-mbm"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="MODEL"):
        load_mbm(tmp_path / "bad.json")


def hef_band_csv(folder, path):
    """Hintereisferner's WGMS band balances 1980-2003 as an MBM-layout CSV (mm w.e.), plus one
    row with an impossible date that must be dropped and counted."""
    import csv
    from pathlib import Path

    from glacier_mapper_plugin.core.vector import read_layer
    from glacier_mapper_plugin.core.massbalance.wgms import elevation_bands
    folder, path = Path(folder), Path(path)
    c = read_layer(folder / "Hintereisferner_RGI6.shp").geometries[0].centroid
    obs = [o for o in elevation_bands(folder / "profile_WGMS-00491.csv", "RGI60-11.00897", c.x, c.y)
           if 1980 <= o.year <= 2003]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["POINT_ID", "POINT_LAT", "POINT_LON", "POINT_ELEVATION", "FROM_DATE", "TO_DATE",
                    "POINT_BALANCE", "RGIId"])
        for o in obs:
            w.writerow([o.point_id, o.lat, o.lon, o.elevation, o.from_date.strftime("%Y%m%d"),
                        o.to_date.strftime("%Y%m%d"), round(o.balance * 1000), o.glacier])
        w.writerow(["bad", c.y, c.x, 3000, "19999999", "20000930", -100, "RGI60-11.00897"])
    return path


def test_climate_cell_is_a_land_cell_near_the_point():
    """Nearest valid (non-NaN, land) cell within 1.5 cells, else an error naming the point:
    Icelandic stakes must not train on Alpine climate, sea cells are never used."""
    import numpy as np
    from glacier_mapper_plugin.core.massbalance.climate import MonthlyClimate
    t = np.full((1, 3, 3), 5.0, np.float32)
    t[0, 1, 1] = np.nan  # the centre cell is sea
    clim = MonthlyClimate([(2000, 1)], np.array([10.0, 10.1, 10.2]), np.array([47.0, 46.9, 46.8]),
                          {"temperature": t, "precipitation": t.copy()}, np.full((3, 3), 2000.0))
    r, c = clim.cell(10.1, 46.9)
    assert (r, c) != (1, 1) and np.isfinite(t[0, r, c])
    with pytest.raises(ValueError, match="CLIMATE has no land cell near a stake at -19.0000 E, 64.0000 N"):
        clim.cell(-19.0, 64.0, "a stake")


def test_plot_stays_readable_with_hundreds_of_glaciers(tmp_path):
    """300 glaciers: grey lines and a labelled regional mean, not 900 legend entries."""
    import matplotlib
    matplotlib.use("Agg")
    from glacier_mapper_plugin.core.massbalance.workflow import GlacierSeries, plot_series
    rng = np.random.default_rng(0)
    series = [GlacierSeries(f"RGI60-11.{i:05d}", [dict(year=y, ba=float(rng.normal(-1, 0.5)), bw=1.0, bs=-2.0)
                                                  for y in range(2000, 2006)], None,
                            [(2500.0 + 100 * k, -2.0 + 0.5 * k) for k in range(6)]) for i in range(300)]
    import matplotlib.pyplot as plt
    seen = {}
    original = plt.Figure.savefig

    def spy(fig, *a, **k):
        seen["labels"] = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        return original(fig, *a, **k)

    plt.Figure.savefig = spy
    try:
        png = plot_series(series, tmp_path / "mb.png")
    finally:
        plt.Figure.savefig = original
    assert png.exists() and (tmp_path / "mb.html").exists()
    assert len(seen["labels"]) == 4 and "mean Ba of 300 glaciers" in seen["labels"]


def _features_one_by_one(c, sites, months, options):
    """The per-site, per-month definition the vectorised features must reproduce."""
    from glacier_mapper_plugin.core.massbalance.seasons import hemisphere, hydro_month
    rows = []
    for s in sites:
        r, k = c.cell(s.lon, s.lat, "a site")
        dz = s.elevation - float(c.elevation[r, k])
        for (y, m) in months:
            t = c.index(y, m)
            rows.append([c.variables["temperature"][t, r, k] + options.lapse_rate * dz,
                         c.variables["precipitation"][t, r, k] * options.precipitation_factor, dz,
                         s.elevation, s.slope, np.sin(np.radians(s.aspect)), np.cos(np.radians(s.aspect)),
                         hydro_month(m, hemisphere(s.lat, options.hemisphere))])
    return np.asarray(rows, np.float32)


def test_vectorised_features_equal_the_definition_and_keep_the_checks():
    rng = np.random.default_rng(0)
    months = [(y, m) for y in range(2001, 2004) for m in range(1, 13)]
    temp = rng.normal(0, 8, (len(months), 3, 3)).astype(np.float32)
    temp[:, 1, 1] = np.nan  # a sea cell: sites nearest to it take a land neighbour
    c = MonthlyClimate(months, np.array([10.0, 10.1, 10.2]), np.array([47.0, 46.9, 46.8]),
                       {"temperature": temp, "precipitation": rng.gamma(2, 50, temp.shape).astype(np.float32)},
                       rng.uniform(1500, 2500, (3, 3)).astype(np.float32))
    sites = [Site(lo, la, z, s, a) for lo, la, z, s, a in zip(
        rng.uniform(9.97, 10.23, 200), rng.uniform(46.77, 47.03, 200), rng.uniform(2000, 3500, 200),
        rng.uniform(0, 40, 200), rng.uniform(0, 360, 200))]
    opts = MBMOptions(precipitation_factor=1.3)
    got = site_month_features(c, sites, months[5:20], opts)
    np.testing.assert_array_equal(got, _features_one_by_one(c, sites, months[5:20], opts))
    with pytest.raises(ValueError, match="no land cell near a site at -19"):
        site_month_features(c, sites[:3] + [Site(-19.0, 64.0, 1000.0)], months[:2], opts)


def test_glacier_cells_by_window_equal_the_whole_dem(region):
    """Cells, elevations, slopes and aspects read in the glacier's window are those of the
    whole DEM (the gradient sees one extra cell at the window's edges)."""
    from glacier_mapper_plugin.core.vector import read_layer
    layer = read_layer(region.inventory, "inventory")
    topo = Topography(region.dem)
    with rasterio.open(region.dem) as src:
        dem = src.read(1, masked=True).astype(np.float64).filled(np.nan)
    gy, gx = np.gradient(dem, 10.0, 10.0)
    slope = np.degrees(np.arctan(np.hypot(gx, -gy)))
    aspect = (np.degrees(np.arctan2(-gx, gy)) + 360.0) % 360.0
    from rasterio import features
    for geom in layer.geometries[:4]:
        sites, (rows, cols) = topo.cells(geom, layer.crs)
        mask = features.rasterize([(geom, 1)], out_shape=dem.shape, transform=topo.transform)
        want_r, want_c = np.nonzero(mask.astype(bool))
        assert np.array_equal(rows, want_r) and np.array_equal(cols, want_c)
        assert [s.elevation for s in sites] == dem[rows, cols].tolist()
        np.testing.assert_allclose([s.slope for s in sites], slope[rows, cols], rtol=1e-12)
        np.testing.assert_allclose([s.aspect for s in sites], aspect[rows, cols], rtol=1e-12)


def test_every_band_with_a_dem_cell_keeps_its_record(shared_data):
    """Hintereisferner's 50 m band balances (profile_WGMS-00491.csv, shared/data/oggm_hef):
    each record averages over cells of its own band, so a narrow band near the top keeps its
    record; a sample of 200 cells for the whole glacier (as before) loses some bands."""
    import csv

    from glacier_mapper_plugin.core.massbalance.model import SITES_PER_RECORD, observation_sites
    from glacier_mapper_plugin.core.massbalance.topography import Topography
    from glacier_mapper_plugin.core.massbalance.wgms import records_from_table
    from glacier_mapper_plugin.core.vector import read_layer
    folder = shared_data / "oggm_hef"
    layer = read_layer(folder / "Hintereisferner_RGI6.shp")
    with open(folder / "profile_WGMS-00491.csv", newline="") as f:
        reader = csv.reader(f)
        centres = next(reader)[1:]
        rows = [dict(YEAR=line[0], RGI_ID="HEF", LOWER_BOUND=float(z) - 25, UPPER_BOUND=float(z) + 25,
                     ANNUAL_BALANCE=v) for line in reader if int(line[0]) == 2003
                for z, v in zip(centres, line[1:]) if v]
    rows.append(dict(YEAR="2003", RGI_ID="HEF", LOWER_BOUND=9999, UPPER_BOUND=9999, ANNUAL_BALANCE="-1800"))
    obs, _ = records_from_table(rows, "mm", lambda r: r["RGI_ID"], lambda g: (10.76, 46.8, "north"))
    whole = obs.pop()  # the glacier-wide record
    topo = Topography(folder / "hef_srtm.tif")
    cells = topo.cells(layer.geometries[0], layer.crs)[0]
    sampled = topo.cells(layer.geometries[0], layer.crs, max_sites=200, seed=0)[0]
    z = np.array([c.elevation for c in cells])
    with_cells = [o for o in obs if ((z >= o.elevation - 25) & (z < o.elevation + 25)).any()]
    placed = [o for o in obs if observation_sites(o, {"HEF": cells})]
    assert placed == with_cells and len(placed) >= 20
    assert len([o for o in obs if observation_sites(o, {"HEF": sampled})]) < len(placed)  # the old way
    assert max(len(observation_sites(o, {"HEF": cells})) for o in obs) <= SITES_PER_RECORD < len(cells)
    assert len(observation_sites(whole, {"HEF": cells})) == SITES_PER_RECORD
    again = [observation_sites(o, {"HEF": cells}) for o in obs]
    assert again == [observation_sites(o, {"HEF": cells}) for o in obs]  # seeded: the same every call
