import numpy as np
import pytest
import rasterio
from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsProject, QgsRasterLayer, QgsVectorLayer)



def test_run_writes_named_outputs(processing, provider, tmp_path):
    res = processing.run("glacier_mapper:synthetic_region",
                         {"OUTPUT_FOLDER": str(tmp_path), "SEED": 5, "SIZE_KM": 3.0,
                          "N_GLACIERS": 4, "START_YEAR": 2016, "END_YEAR": 2023})
    assert res["GLACIER_COUNT"] == 4
    assert res["TRUE_REGIONAL_RATE"] < 0
    imagery = QgsRasterLayer(res["IMAGERY_START"], "s")
    assert imagery.isValid() and imagery.bandCount() == 6
    assert imagery.crs().authid() == "EPSG:32632"
    assert imagery.width() == 300
    assert imagery.dataProvider().sourceNoDataValue(1) == 0
    assert imagery.bandName(1).endswith("B2")
    inventory = QgsVectorLayer(res["INVENTORY"], "inv", "ogr")
    assert inventory.isValid() and inventory.featureCount() == 4
    assert {"id", "name", "area_km2", "date"} <= set(inventory.fields().names())
    assert "2016" in res["IMAGERY_START"] and "2023" in res["IMAGERY_END"]
    for key in ("DEM", "TRUTH_START", "TRUTH_END"):
        assert QgsRasterLayer(res[key], key).isValid()


def test_outputs_load_into_the_project_styled(processing, provider, tmp_path):
    context = QgsProcessingContext()
    project = QgsProject()
    context.setProject(project)
    alg = provider.algorithm("synthetic_region").create()
    params = {"OUTPUT_FOLDER": str(tmp_path), "SEED": 1, "SIZE_KM": 2.0, "N_GLACIERS": 2}
    results, ok = alg.run(params, context, QgsProcessingFeedback())
    assert ok
    details = context.layersToLoadOnCompletion()
    assert len(details) == 4
    names = {d.name for d in details.values()}
    assert "Inventory" in names and "DEM (hillshade)" in names
    # The post-processor applies the QML: the inventory is drawn as outlines only.
    for path, detail in details.items():
        if detail.name == "Inventory":
            layer = QgsVectorLayer(path, "inv", "ogr")
            detail.postProcessor().postProcessLayer(layer, context, QgsProcessingFeedback())
            symbol = layer.renderer().symbol()
            assert symbol.symbolLayer(0).brushStyle() == 0  # Qt.NoBrush


def test_cancelled_run_writes_nothing(processing, provider, tmp_path):
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("glacier_mapper:synthetic_region",
                       {"OUTPUT_FOLDER": str(tmp_path / "out"), "SIZE_KM": 2.0, "N_GLACIERS": 2},
                       feedback=feedback)
    assert not any((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_bad_years_give_a_clear_error(processing, provider, tmp_path):
    with pytest.raises(QgsProcessingException, match="END_YEAR"):
        processing.run("glacier_mapper:synthetic_region",
                       {"OUTPUT_FOLDER": str(tmp_path), "START_YEAR": 2020, "END_YEAR": 2019})


def test_same_seed_same_region_through_processing(processing, provider, tmp_path):
    params = {"SEED": 9, "SIZE_KM": 2.0, "N_GLACIERS": 2}
    a = processing.run("glacier_mapper:synthetic_region", dict(params, OUTPUT_FOLDER=str(tmp_path / "a")))
    b = processing.run("glacier_mapper:synthetic_region", dict(params, OUTPUT_FOLDER=str(tmp_path / "b")))
    with rasterio.open(a["IMAGERY_END"]) as ra, rasterio.open(b["IMAGERY_END"]) as rb:
        assert np.array_equal(ra.read(), rb.read())
