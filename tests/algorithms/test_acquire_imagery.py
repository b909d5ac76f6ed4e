import datetime as dt

import pytest
import rasterio
from qgis.core import (QgsProcessingException, QgsProcessingFeatureSourceDefinition, QgsProject,
                       QgsVectorLayer)

TARGET = dt.date(2023, 9, 1)


@pytest.fixture()
def served(served_archive):
    return served_archive["region"], served_archive["api"]


def test_selected_glaciers_in_wgs84(processing, served, tmp_path):
    region, api = served
    wgs84 = tmp_path / "inv4326.gpkg"
    processing.run("native:reprojectlayer", {"INPUT": f"{region.inventory}|layername=inventory",
                                             "TARGET_CRS": "EPSG:4326", "OUTPUT": str(wgs84)})
    layer = QgsVectorLayer(str(wgs84), "inventory", "ogr")
    QgsProject.instance().addMapLayer(layer)
    try:
        layer.selectByExpression("\"id\" IN ('G002', 'G003')")
        res = processing.run("glacier_mapper:acquire_imagery", {
            "INVENTORY": QgsProcessingFeatureSourceDefinition(layer.id(), True), "ID_FIELD": "id",
            "DATE": TARGET.isoformat(), "STAC_URL": api.url, "BUFFER_M": 200, "DEM": str(region.dem),
            "OUTPUT_FOLDER": str(tmp_path / "chips"), "OUTPUT": str(tmp_path / "table.gpkg")})
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
    assert res["N_OK"] == 2 and sorted(p.split("/")[-1] for p in res["FILES"]) == ["G002.tif", "G003.tif"]
    table = QgsVectorLayer(res["OUTPUT"], "t", "ogr")
    rows = {f["glacier_id"]: f for f in table.getFeatures()}
    assert set(rows) == {"G002", "G003"} and all(r["status"] == "ok" for r in rows.values())
    with rasterio.open(res["FILES"][0]) as src:
        assert src.count == 7 and src.crs.to_epsg() == 32632
    # How the reflectance was decoded is in the table, with numbers as numbers.
    row = rows["G002"]
    assert row["collection"] == "sentinel-2-l2a" and row["offset_in_dn"] == "yes"
    assert row["offset_decided_by"] == "metadata+pixels" and "s2:processing_baseline 05.09" in row["offset_metadata"]
    assert 900 <= row["dark_dn"] < 1250 and row["snow_pct"] >= 0
    types = {f.name(): f.typeName().lower() for f in table.fields()}
    for name in ("cloud_pct", "masked_pct", "snow_pct", "cloud_only_snow_pct", "dark_dn"):
        assert types[name] in ("real", "double"), (name, types[name])
    assert types["candidates"] in ("integer", "integer64", "int")


def test_cloud_snow_selection_parameter(processing, served, tmp_path):
    region, api = served
    res = processing.run("glacier_mapper:acquire_imagery", {
        "INVENTORY": f"{region.inventory}|layername=inventory", "ID_FIELD": "id", "SELECTION": 1,
        "DATE": TARGET.isoformat(), "STAC_URL": api.url, "BUFFER_M": 100, "DEM": "",
        "COLLECTION": "sentinel-2-l2a", "OUTPUT_FOLDER": str(tmp_path / "chips"), "OUTPUT": "TEMPORARY_OUTPUT"})
    with rasterio.open(res["FILES"][0]) as src:
        assert src.tags()["SELECTION"] == "cloud_snow" and src.tags()["COLLECTION"] == "sentinel-2-l2a"


def test_bad_date_is_named(processing, served, tmp_path):
    region, api = served
    with pytest.raises(QgsProcessingException, match="DATE"):
        processing.run("glacier_mapper:acquire_imagery", {
            "INVENTORY": f"{region.inventory}|layername=inventory", "DATE": "1 Sept 2023",
            "STAC_URL": api.url, "OUTPUT_FOLDER": str(tmp_path), "OUTPUT": "TEMPORARY_OUTPUT"})


def test_acquired_chip_segments_directly(processing, served, tmp_path, untrained_model):
    """The acquisition output (float reflectance, DEM and QUALITY bands) is a valid INPUT."""
    region, api = served
    res = processing.run("glacier_mapper:acquire_imagery", {
        "INVENTORY": f"{region.inventory}|layername=inventory", "ID_FIELD": "id",
        "DATE": TARGET.isoformat(), "STAC_URL": api.url, "BUFFER_M": 100, "DEM": str(region.dem),
        "OUTPUT_FOLDER": str(tmp_path / "chips"), "OUTPUT": "TEMPORARY_OUTPUT"})
    seg = processing.run("glacier_mapper:segment_glaciers", {
        "INPUT": res["FILES"][0], "MODEL": str(untrained_model), "TILE_SIZE": 128, "OVERLAP": 32,
        "OUTPUT_PROBABILITY": str(tmp_path / "p.tif"), "OUTPUT_MASK": None, "OUTPUT_POLYGONS": None})
    with rasterio.open(seg["OUTPUT_PROBABILITY"]) as p:
        assert p.read(1).size > 0
