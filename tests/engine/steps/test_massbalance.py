"""The mass-balance steps through `glacier-mapper`, as a user runs them from a data folder:
climate delivered as one file per variable or split as the CDS splits it gives the same
model and the same predictions (real ERA5-Land files of the Ötztal, OGGM's sample data, and
Hintereisferner's WGMS band balances from shared/data)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXE = Path(sys.executable).parent / "glacier-mapper"


def cli(*args, cwd):
    out = subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def split_as_the_cds_delivers(files, folder):
    """t2m and tp each in two files by period; the later one spans the ERA5T boundary and so
    carries an `expver` dimension (1: final, 5: preliminary; each month valid in one only),
    with `valid_time` for time, as the new CDS writes NetCDF4."""
    import xarray as xr
    folder.mkdir()
    out = []
    for f in files:
        ds = xr.open_dataset(f)
        var = next(iter(ds.data_vars))
        if "time" not in ds.dims or ds.sizes["time"] < 2:
            out.append(f)
            continue
        early = ds.sel(time=slice("1981", "1999"))
        late = ds.sel(time=slice("2000", "2018"))
        final = late.where(late["time"].dt.year < 2018)
        preliminary = late.where(late["time"].dt.year == 2018)
        late = xr.concat([final, preliminary], dim=xr.DataArray([1, 5], dims="expver", name="expver"))
        late = late.transpose("time", "expver", ...).rename(time="valid_time")
        for part, name in ((early, "a"), (late, "b")):
            path = folder / f"{var}_{name}.nc"
            part.to_netcdf(path, engine="netcdf4")
            out.append(path)
    return out


@pytest.fixture(scope="module")
def hef(shared_data, tmp_path_factory):
    from tests.core.massbalance.test_model import hef_band_csv
    folder = shared_data / "oggm_hef"
    era5 = shared_data / "oggm_era5land_oetztal"
    work = tmp_path_factory.mktemp("hef")
    files = [era5 / "sel_era5_land_monthly_t2m_1981-2018.nc", era5 / "sel_era5_land_monthly_prcp_1981-2018.nc",
             era5 / "sel_era5_land_invariant.nc"]
    return dict(folder=folder, work=work, csv=hef_band_csv(folder, work / "hef.csv"), whole=files,
                split=split_as_the_cds_delivers(files, work / "split"),
                extract=regional_extract(files, work / "extract"))


def regional_extract(files, folder):
    """A smaller download around the glacier (5 x 5 of the 6 x 7 cells): the cells that the
    glacier's sites use, and their neighbours, are in both."""
    import xarray as xr
    folder.mkdir()
    out = []
    for f in files:
        ds = xr.open_dataset(f)
        part = ds.isel(latitude=slice(1, 6), longitude=slice(0, 5))
        out.append(folder / Path(f).name)
        part.to_netcdf(out[-1], engine="netcdf4")
    return out


def _train_and_predict(hef, climate, name):
    from glacier_mapper_plugin.core.vector import read_layer
    work, folder = hef["work"], hef["folder"]
    flags = [x for f in climate for x in ("--climate", f)]
    cli("train-mb", "--observations", hef["csv"], "--units", "mm", *flags, "--dem", folder / "hef_srtm.tif",
        "--n-estimators", 40, "--folds", 3, "--output-model", f"{name}.json", "--output-metrics", f"{name}_metrics.gpkg",
        cwd=work)
    cli("predict-mb", "--inventory", folder / "Hintereisferner_RGI6.shp", "--model", f"{name}.json", *flags,
        "--dem", folder / "hef_srtm.tif", "--start-year", 2000, "--end-year", 2018, "--output-folder", name,
        "--output", f"{name}_balances.gpkg", cwd=work)
    metrics = read_layer(work / f"{name}_metrics.gpkg").records
    balances = read_layer(work / f"{name}_balances.gpkg").records
    return metrics, balances


def test_split_climate_files_give_the_same_model_and_predictions(hef):
    whole = _train_and_predict(hef, hef["whole"], "whole")
    split = _train_and_predict(hef, hef["split"], "split")
    assert whole[0] == split[0]                                   # cross-validated metrics
    assert len(whole[1]) == 19 and whole[1] == split[1]           # 2000-2018, 2018 from ERA5T
    assert all(np.isfinite(r["ba"]) for r in split[1])
    # ID_FIELD empty: the RGI 6 id and name join the series back to the outline
    assert {(r["RGIId"], r["Name"]) for r in whole[1]} == {("RGI60-11.00897", "Hintereisferner")}
    extract = _train_and_predict(hef, hef["extract"], "extract")
    assert extract == whole


def test_glacier_wide_records_in_mm_declared_as_m_are_refused(hef):
    """WGMS's glacier-wide table of Hintereisferner (mm w.e.) with UNITS=m: refused before any
    training, naming UNITS and the unit the values look like; no model file."""
    folder, work = hef["folder"], hef["work"]
    out = subprocess.run([str(EXE), "train-mb", "--observations", str(folder / "mbdata_WGMS-00491.csv"),
                          "--units", "m", "--inventory", str(folder / "Hintereisferner_RGI6.shp"),
                          "--id-field", "RGIId", "--glacier-field", "RGI_ID", *[x for f in hef["whole"] for x in ("--climate", f)],
                          "--dem", str(folder / "hef_srtm.tif"), "--output-model", "wrong_units.json"],
                         capture_output=True, text=True, cwd=work, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "UNITS=m" in out.stderr and "look like mm w.e." in out.stderr and "set UNITS=mm" in out.stderr
    assert not (work / "wrong_units.json").exists()


def test_wgms_releases_in_every_form_train_the_same_model(hef, shared_data):
    """Hintereisferner's WGMS records 2008-2018 (glacier-wide, seasonal since 2013, 50 m bands)
    as FoG 2026 publishes them (its folder; its zip as downloaded; glacier.csv without RGI
    links: then by position) and as a release before 2025 (upper-case
    tables, mm w.e.), ID_FIELD empty: every form trains the same model (the same
    cross-validated metrics) from the same observations; tests/published.py builds them."""
    from glacier_mapper_plugin.core.vector import read_layer
    from tests.published import fog_release, old_fog_release
    work, folder = hef["work"] / "wgms", hef["folder"]
    work.mkdir()
    years = (2008, 2018)
    forms = {"folder": (fog_release(shared_data, work / "a", years=years), "Hintereisferner_RGI6.shp"),
             "zip": (fog_release(shared_data, work / "b", form="zip", years=years), "Hintereisferner_RGI6.shp"),
             "position": (fog_release(shared_data, work / "c", links=False, years=years), "Hintereisferner_RGI6.shp"),
             "before 2025": (old_fog_release(shared_data, work / "d", years=years), "Hintereisferner_RGI6.shp")}
    flags = [x for f in hef["whole"] for x in ("--climate", f)]
    metrics, logs = {}, {}
    for name, (release, outline) in forms.items():
        out = cli("train-mb", "--wgms", release, "--inventory", folder / outline, *flags, "--dem",
                  folder / "hef_srtm.tif", "--n-estimators", 40, "--folds", 3, "--output-model", "m.json",
                  "--output-metrics", f"{name.replace(' ', '_')}.gpkg", cwd=work)
        metrics[name] = read_layer(work / f"{name.replace(' ', '_')}.gpkg").records
        logs[name] = out.stderr
    assert "FoG 2025+ layout (balances in m w.e.)" in logs["zip"] and "1 by RGI/GLIMS link" in logs["zip"]
    assert "FoG before 2025 layout (balances in mm w.e.)" in logs["before 2025"]
    assert "0 by RGI/GLIMS link, 1 by position" in logs["position"]
    assert {m["target"] for m in metrics["folder"]} >= {"annual_band", "annual_glacier-wide", "winter_glacier-wide"}
    for name in forms:
        assert metrics[name] == metrics["folder"], name


def test_wgms_records_of_glaciers_not_in_the_inventory_are_refused(hef, shared_data):
    """FoG 2026's Hintereisferner records with Iceland's RGI 6.2 inventory: nothing links or lies
    inside, so the run is refused before any training, naming WGMS and the glacier."""
    from tests.published import fog_release
    work, folder = hef["work"] / "elsewhere", hef["folder"]
    work.mkdir()
    release = fog_release(shared_data, work, years=(2015, 2018))
    out = subprocess.run([str(EXE), "train-mb", "--wgms", str(release), "--inventory",
                          str(shared_data / "mbm_iceland" / "06_rgi62_Iceland.shp"),
                          *[x for f in hef["whole"] for x in ("--climate", f)], "--dem", str(folder / "hef_srtm.tif"),
                          "--output-model", "m.json"], capture_output=True, text=True, cwd=work, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "WGMS: none of its 1 glacier(s) (491 HINTEREIS F.) is in INVENTORY" in out.stderr
    assert not (work / "m.json").exists()
