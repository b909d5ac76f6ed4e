"""Tiny train -> predict Mass Balance Machine runs on Hintereisferner (../shared/data)."""
import csv

import pytest
import rasterio
from qgis.core import QgsVectorLayer

from glacier_mapper_plugin.core.mass_balance import load_mbm
from glacier_mapper_plugin.core.vector import read_layer
from glacier_mapper_plugin.core.wgms import elevation_bands


@pytest.fixture(scope="module")
def hef(shared_data, tmp_path_factory):
    folder = shared_data / "oggm_hef"
    tmp = tmp_path_factory.mktemp("hef")
    c = read_layer(folder / "Hintereisferner_RGI6.shp").geometries[0].centroid
    obs = [o for o in elevation_bands(folder / "profile_WGMS-00491.csv", "RGI60-11.00897", c.x, c.y)
           if 1980 <= o.year <= 2003]
    path = tmp / "hef_bands.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["POINT_ID", "POINT_LAT", "POINT_LON", "POINT_ELEVATION", "FROM_DATE", "TO_DATE",
                    "POINT_BALANCE", "RGIId"])
        for o in obs:
            w.writerow([o.point_id, o.lat, o.lon, o.elevation, o.from_date.strftime("%Y%m%d"),
                        o.to_date.strftime("%Y%m%d"), round(o.balance * 1000), o.glacier])
        w.writerow(["bad", c.y, c.x, 3000, "19999999", "20000930", -100, "RGI60-11.00897"])
    return dict(folder=folder, csv=path, tmp=tmp)


def test_train_then_predict(processing, hef, tmp_path):
    f = hef["folder"]
    trained = processing.run("glacier_mapper:train_mass_balance", {
        "OBSERVATIONS": str(hef["csv"]), "UNITS": "mm", "CLIMATE": str(f / "histalp_merged_hef.nc"),
        "DEM": str(f / "hef_srtm.tif"), "N_ESTIMATORS": 60, "FOLDS": 3,
        "OUTPUT_MODEL": str(tmp_path / "mbm.json"), "OUTPUT_METRICS": str(tmp_path / "metrics.gpkg")})
    booster, header = load_mbm(trained["OUTPUT_MODEL"])
    assert header.training["dropped_rows"] == 1
    assert "leave-years-out" in header.metrics["cross_validation"]
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
    with pytest.raises(QgsProcessingException, match="CLIMATE covers none"):
        processing.run("glacier_mapper:predict_mass_balance", {
            "INVENTORY": str(f / "Hintereisferner_RGI6.shp"), "MODEL": trained["OUTPUT_MODEL"],
            "CLIMATE": str(f / "histalp_merged_hef.nc"), "DEM": str(f / "hef_srtm.tif"),
            "START_YEAR": 2015, "END_YEAR": 2020, "OUTPUT_FOLDER": str(tmp_path / "mb"),
            "OUTPUT": "TEMPORARY_OUTPUT"})
