"""Tiny train -> predict Mass Balance Machine runs on Hintereisferner (../shared/data)."""
import json

import pytest
import rasterio
from qgis.core import QgsVectorLayer

from tests.conftest import in_engine


@pytest.fixture(scope="module")
def hef(shared_data, tmp_path_factory):
    folder = shared_data / "oggm_hef"
    tmp = tmp_path_factory.mktemp("hef")
    path = in_engine("import json; from tests.core.massbalance.test_model import hef_band_csv; "
                     f"print(json.dumps(str(hef_band_csv({str(folder)!r}, {str(tmp / 'hef_bands.csv')!r}))))")
    return dict(folder=folder, csv=path, tmp=tmp)


def test_train_then_predict(processing, hef, tmp_path):
    f = hef["folder"]
    trained = processing.run("glacier_mapper:train_mass_balance", {
        "OBSERVATIONS": str(hef["csv"]), "UNITS": "mm", "CLIMATE": str(f / "histalp_merged_hef.nc"),
        "DEM": str(f / "hef_srtm.tif"), "N_ESTIMATORS": 60, "FOLDS": 3,
        "OUTPUT_MODEL": str(tmp_path / "mbm.json"), "OUTPUT_METRICS": str(tmp_path / "metrics.gpkg")})
    header = json.loads(open(trained["OUTPUT_MODEL"]).read())["header"]  # XGBoost JSON + header
    assert header["training"]["dropped_rows"] == 1
    assert "leave-years-out" in header["metrics"]["cross_validation"]
    metrics = QgsVectorLayer(trained["OUTPUT_METRICS"], "m", "ogr")
    rows = {m["target"]: m for m in metrics.getFeatures()}
    assert rows["annual_point"]["rmse"] < 1.5 and rows["annual_point"]["n"] > 300
    predicted = processing.run("glacier_mapper:predict_mass_balance", {
        "INVENTORY": str(f / "Hintereisferner_RGI6.shp"), "ID_FIELD": "RGIId",
        "MODEL": trained["OUTPUT_MODEL"], "CLIMATE": str(f / "histalp_merged_hef.nc"),
        "DEM": str(f / "hef_srtm.tif"), "START_YEAR": 2000, "END_YEAR": 2003,
        "OUTPUT_FOLDER": str(tmp_path / "mb"), "OUTPUT": str(tmp_path / "series.gpkg")})
    table = QgsVectorLayer(predicted["OUTPUT"], "t", "ogr")
    years = sorted(r["year"] for r in table.getFeatures())
    assert years == [2000, 2001, 2002, 2003]
    for r in table.getFeatures():
        assert -4 < r["ba"] < 1.5 and r["bw"] > 0 > r["bs"]
        assert r["ba"] == pytest.approx(r["bw"] + r["bs"], abs=1e-4)
    with rasterio.open(predicted["RASTERS"][0]) as src:
        assert src.count == 12 and src.descriptions[:3] == ("Ba_2000", "Bw_2000", "Bs_2000")
    assert (tmp_path / "mb" / "mass_balance.png").exists()


def test_years_outside_the_climate_are_refused(processing, hef, tmp_path):
    from qgis.core import QgsProcessingException
    f = hef["folder"]
    trained = processing.run("glacier_mapper:train_mass_balance", {
        "OBSERVATIONS": str(hef["csv"]), "UNITS": "mm", "CLIMATE": str(f / "histalp_merged_hef.nc"),
        "DEM": str(f / "hef_srtm.tif"), "N_ESTIMATORS": 10, "FOLDS": 2,
        "OUTPUT_MODEL": str(tmp_path / "mbm.json"), "OUTPUT_METRICS": "TEMPORARY_OUTPUT"})
    with pytest.raises(QgsProcessingException, match="does not cover the hydrological year\\(s\\) 2004, 2005"):
        processing.run("glacier_mapper:predict_mass_balance", {  # partly outside: never silently dropped
            "INVENTORY": str(f / "Hintereisferner_RGI6.shp"), "MODEL": trained["OUTPUT_MODEL"],
            "CLIMATE": str(f / "histalp_merged_hef.nc"), "DEM": str(f / "hef_srtm.tif"),
            "START_YEAR": 2002, "END_YEAR": 2005, "OUTPUT_FOLDER": str(tmp_path / "mb2"),
            "OUTPUT": "TEMPORARY_OUTPUT"})
    assert not (tmp_path / "mb2").exists()  # the failed run left no folder
    with pytest.raises(QgsProcessingException, match="CLIMATE covers none"):
        processing.run("glacier_mapper:predict_mass_balance", {
            "INVENTORY": str(f / "Hintereisferner_RGI6.shp"), "MODEL": trained["OUTPUT_MODEL"],
            "CLIMATE": str(f / "histalp_merged_hef.nc"), "DEM": str(f / "hef_srtm.tif"),
            "START_YEAR": 2015, "END_YEAR": 2020, "OUTPUT_FOLDER": str(tmp_path / "mb"),
            "OUTPUT": "TEMPORARY_OUTPUT"})


def test_era5_land_as_delivered_three_files(processing, hef, shared_data, tmp_path):
    """ERA5-Land as the CDS delivers it (OGGM's Ötztal sample: t2m, tp and the invariant
    geopotential in three packed files) given as CLIMATE three times; train and predict."""
    f, era = hef["folder"], shared_data / "oggm_era5land_oetztal"
    climate = [str(era / "sel_era5_land_monthly_t2m_1981-2018.nc"), str(era / "sel_era5_land_monthly_prcp_1981-2018.nc"),
               str(era / "sel_era5_land_invariant.nc")]
    trained = processing.run("glacier_mapper:train_mass_balance", {
        "OBSERVATIONS": str(hef["csv"]), "UNITS": "mm", "CLIMATE": climate, "DEM": str(f / "hef_srtm.tif"),
        "N_ESTIMATORS": 60, "FOLDS": 3, "OUTPUT_MODEL": str(tmp_path / "mbm.json"),
        "OUTPUT_METRICS": str(tmp_path / "metrics.gpkg")})
    rows = {m["target"]: m for m in QgsVectorLayer(trained["OUTPUT_METRICS"], "m", "ogr").getFeatures()}
    assert rows["annual_point"]["rmse"] < 1.5
    predicted = processing.run("glacier_mapper:predict_mass_balance", {
        "INVENTORY": str(f / "Hintereisferner_RGI6.shp"), "ID_FIELD": "RGIId", "MODEL": trained["OUTPUT_MODEL"],
        "CLIMATE": climate, "DEM": str(f / "hef_srtm.tif"), "START_YEAR": 2010, "END_YEAR": 2012,
        "OUTPUT_FOLDER": str(tmp_path / "mb"), "OUTPUT": str(tmp_path / "series.gpkg")})
    table = list(QgsVectorLayer(predicted["OUTPUT"], "t", "ogr").getFeatures())
    assert sorted(r["year"] for r in table) == [2010, 2011, 2012]
    assert all(-4 < r["ba"] < 1.5 for r in table)
    # Forced southern seasons: the year runs April-March and winter April-October.
    south = processing.run("glacier_mapper:predict_mass_balance", {
        "INVENTORY": str(f / "Hintereisferner_RGI6.shp"), "ID_FIELD": "RGIId", "MODEL": trained["OUTPUT_MODEL"],
        "CLIMATE": climate, "DEM": str(f / "hef_srtm.tif"), "START_YEAR": 2010, "END_YEAR": 2012,
        "HEMISPHERE": "south", "OUTPUT_FOLDER": str(tmp_path / "mb_s"), "OUTPUT": str(tmp_path / "s.gpkg")})
    rows = {r["year"]: r for r in QgsVectorLayer(south["OUTPUT"], "s", "ogr").getFeatures()}
    north = {r["year"]: r for r in table}
    assert all(abs(rows[y]["bw"] + rows[y]["bs"] - rows[y]["ba"]) < 1e-4 for y in rows)
    assert any(abs(rows[y]["bw"] - north[y]["bw"]) > 0.05 for y in rows)


def _wgms_records(folder, path):
    """One mixed table in WGMS's mass-balance layout from the real Hintereisferner files:
    glacier-wide annual/winter/summer rows (mbdata_WGMS-00491.csv, bounds 9999) and 50 m band
    rows (profile_WGMS-00491.csv), 1981-2018, plus a row of an unknown glacier and one without
    a balance, which must be left out and reported."""
    import csv
    rows = []
    with open(folder / "mbdata_WGMS-00491.csv", newline="") as f:
        for r in csv.DictReader(f):
            if 1982 <= int(r["YEAR"]) <= 2018:
                rows.append(dict(YEAR=r["YEAR"], RGI_ID=r["RGI_ID"], LOWER_BOUND=9999, UPPER_BOUND=9999,
                                 ANNUAL_BALANCE=r["ANNUAL_BALANCE"], WINTER_BALANCE=r["WINTER_BALANCE"],
                                 SUMMER_BALANCE=r["SUMMER_BALANCE"]))
    with open(folder / "profile_WGMS-00491.csv", newline="") as f:
        reader = csv.reader(f)
        centres = next(reader)[1:]
        for line in reader:
            if 1982 <= int(line[0]) <= 2018:
                for z, v in zip(centres, line[1:]):
                    if v:
                        rows.append(dict(YEAR=line[0], RGI_ID="RGI60-11.00897", LOWER_BOUND=float(z) - 25,
                                         UPPER_BOUND=float(z) + 25, ANNUAL_BALANCE=v))
    rows.append(dict(YEAR=2000, RGI_ID="RGI60-11.99999", LOWER_BOUND=9999, UPPER_BOUND=9999, ANNUAL_BALANCE=-500))
    rows.append(dict(YEAR=2001, RGI_ID="RGI60-11.00897", LOWER_BOUND=9999, UPPER_BOUND=9999))
    keys = ["YEAR", "RGI_ID", "LOWER_BOUND", "UPPER_BOUND", "ANNUAL_BALANCE", "WINTER_BALANCE", "SUMMER_BALANCE"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    return path


def test_glacier_wide_and_band_records_joined_to_the_inventory(processing, shared_data, tmp_path):
    f, era = shared_data / "oggm_hef", shared_data / "oggm_era5land_oetztal"
    climate = [str(era / n) for n in ("sel_era5_land_monthly_t2m_1981-2018.nc",
                                      "sel_era5_land_monthly_prcp_1981-2018.nc", "sel_era5_land_invariant.nc")]
    records = _wgms_records(f, tmp_path / "wgms.csv")
    log = []

    class Feedback(__import__("qgis.core", fromlist=["QgsProcessingFeedback"]).QgsProcessingFeedback):
        def pushInfo(self, m):
            log.append(m)

        def pushWarning(self, m):
            log.append(m)

    trained = processing.run("glacier_mapper:train_mass_balance", {
        "OBSERVATIONS": str(records), "UNITS": "mm", "INVENTORY": str(f / "Hintereisferner_RGI6.shp"),
        "ID_FIELD": "RGIId", "CLIMATE": climate, "DEM": str(f / "hef_srtm.tif"), "N_ESTIMATORS": 60, "FOLDS": 3,
        "OUTPUT_MODEL": str(tmp_path / "mbm.json"), "OUTPUT_METRICS": str(tmp_path / "metrics.gpkg")},
        feedback=Feedback())
    text = "\n".join(log)
    assert "OBSERVATIONS column RGI_ID matched to INVENTORY RGIId: 1 glacier" in text
    assert "glacier not in INVENTORY" in text and "no balance value" in text
    rows = {m["target"]: m for m in QgsVectorLayer(trained["OUTPUT_METRICS"], "m", "ogr").getFeatures()}
    for target in ("annual_glacier-wide", "winter_glacier-wide", "summer_glacier-wide", "annual_band"):
        assert target in rows, rows.keys()
    assert rows["annual_band"]["n"] > 300 and rows["annual_glacier-wide"]["rmse"] < 1.0
    header = json.loads(open(trained["OUTPUT_MODEL"]).read())["header"]
    assert header["training"]["dropped_rows"] == 2
