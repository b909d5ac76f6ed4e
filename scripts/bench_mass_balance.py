"""Real-data check of the Mass Balance Machine on Hintereisferner (../shared/data/oggm_hef):
trained on WGMS elevation-band annual and glacier-wide seasonal balances of the years up to
TRAIN_END with monthly climate (ERA5-Land 1981-2018 as the CDS delivers it, or HISTALP) and
the SRTM DEM; scored on the later years, and by leave-years-out cross-validation, against a
degree-day model calibrated on the same training years.

    .venv/bin/python scripts/bench_mass_balance.py [--train-end 1990] [--climate era5land|histalp]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from glacier_mapper_plugin.core.massbalance.climate import read_climate  # noqa: E402
from glacier_mapper_plugin.core.massbalance.model import (DegreeDay, MBMOptions, aggregate, design,  # noqa: E402
                                                     fit, metrics_by_period, predict_rows)
from glacier_mapper_plugin.core.massbalance.topography import Topography  # noqa: E402
from glacier_mapper_plugin.core.vector import read_layer  # noqa: E402
from glacier_mapper_plugin.core.massbalance.wgms import elevation_bands, glacier_wide  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "oggm_hef"
ERA5 = ROOT.parent / "shared" / "data" / "oggm_era5land_oetztal"
CLIMATES = {
    # ERA5-Land monthly means as the CDS delivers them (three packed files), 1981-2018.
    "era5land": [ERA5 / "sel_era5_land_monthly_t2m_1981-2018.nc", ERA5 / "sel_era5_land_monthly_prcp_1981-2018.nc",
                 ERA5 / "sel_era5_land_invariant.nc"],
    "histalp": [DATA / "histalp_merged_hef.nc"],    # 1801-2003
}


def hef_observations():
    outline = read_layer(DATA / "Hintereisferner_RGI6.shp")
    geom = outline.geometries[0]
    c = geom.centroid
    obs = (elevation_bands(DATA / "profile_WGMS-00491.csv", "HEF", c.x, c.y)
           + glacier_wide(DATA / "mbdata_WGMS-00491.csv", "HEF", c.x, c.y))
    return obs, geom, outline.crs


def run(train_end=1990, options=None, max_sites=80, climate_name="histalp"):
    options = options or MBMOptions()
    obs, geom, crs = hef_observations()
    climate = read_climate(CLIMATES[climate_name])
    obs = [o for o in obs if all(climate.has(*ym) for ym in o.months())]
    topo = Topography(DATA / "hef_srtm.tif")
    sites, _ = topo.cells(geom, crs, max_sites=max_sites, seed=0)
    train = [o for o in obs if o.year <= train_end]
    test = [o for o in obs if o.year > train_end]
    d_train = design(train, climate, options, topo, {"HEF": sites})
    d_test = design(test, climate, options, topo, {"HEF": sites})
    t0 = time.time()
    booster = fit(d_train, options)
    fit_s = time.time() - t0
    mbm = aggregate(predict_rows(booster, d_test.x), d_test.group, d_test.weight, len(d_test.target))
    ddf = DegreeDay().calibrate(d_train)
    base = aggregate(ddf.monthly(d_test.x), d_test.group, d_test.weight, len(d_test.target))
    return (metrics_by_period(mbm, d_test.observations), metrics_by_period(base, d_test.observations),
            ddf, len(d_train.observations), len(d_test.observations), fit_s)


def cross_validated(options=None, k=5, max_sites=80, climate_name="histalp"):
    """Leave-years-out CV (years interleaved): no extrapolation to an unseen warmer climate."""
    from glacier_mapper_plugin.core.massbalance.model import cv_splits
    options = options or MBMOptions()
    obs, geom, crs = hef_observations()
    climate = read_climate(CLIMATES[climate_name])
    topo = Topography(DATA / "hef_srtm.tif")
    sites, _ = topo.cells(geom, crs, max_sites=max_sites, seed=0)
    obs = [o for o in obs if all(climate.has(*ym) for ym in o.months())]
    folds, _ = cv_splits(obs, k)
    pm, pb = np.full(len(obs), np.nan), np.full(len(obs), np.nan)
    for test_idx in folds:
        test_set = set(test_idx)
        train = [o for i, o in enumerate(obs) if i not in test_set]
        test = [obs[i] for i in test_idx]
        d_train = design(train, climate, options, topo, {"HEF": sites})
        d_test = design(test, climate, options, topo, {"HEF": sites})
        booster = fit(d_train, options)
        pm[test_idx] = aggregate(predict_rows(booster, d_test.x), d_test.group, d_test.weight, len(test))
        ddf = DegreeDay().calibrate(d_train)
        pb[test_idx] = aggregate(ddf.monthly(d_test.x), d_test.group, d_test.weight, len(test))
    return metrics_by_period(pm, obs), metrics_by_period(pb, obs), len(obs)


def _table(m, b):
    print(f"{'target':26} {'n':>4} {'MBM RMSE':>9} {'bias':>7} {'R2':>6} {'DDF RMSE':>9} {'bias':>7} {'R2':>6}  (m w.e.)")
    for key in m:
        print(f"{key:26} {m[key]['n']:4d} {m[key]['rmse']:9.3f} {m[key]['bias']:7.3f} {m[key]['r2']:6.2f} "
              f"{b[key]['rmse']:9.3f} {b[key]['bias']:7.3f} {b[key]['r2']:6.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-end", type=int, default=1990)
    p.add_argument("--climate", choices=sorted(CLIMATES), default="era5land")
    a = p.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent")
    m, b, ddf, n_train, n_test, fit_s = run(a.train_end, climate_name=a.climate)
    print(f"Hintereisferner ({a.climate}): trained on {n_train} observations up to {a.train_end}, tested on "
          f"{n_test} after it ({fit_s:.1f} s to fit); degree-day model calibrated on the same "
          f"years: DDF {ddf.ddf * 1000:.2f} mm w.e./K/day, precipitation factor {ddf.precipitation_factor:.2f}")
    _table(m, b)
    m, b, n = cross_validated(climate_name=a.climate)
    print(f"\nleave-years-out cross-validation (5 folds, years interleaved), {n} observations "
          f"within the climate's years ({a.climate}):")
    _table(m, b)
    if a.climate == "histalp":
        print("\n(WGMS seasonal balances of Hintereisferner start in 2013; the HISTALP file ends in "
              "September 2003, so no seasonal record can be scored here: use --climate era5land.)")


if __name__ == "__main__":
    main()
