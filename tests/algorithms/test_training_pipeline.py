"""Tiny train -> segment -> evaluate and cross-validation runs through processing.run."""
import pytest
from qgis.core import QgsProcessingException, QgsVectorLayer

from tests.conftest import in_engine

FAST = {"PATCH_SIZE": 64, "ENCODER": "resnet18", "EPOCHS": 2, "BATCH_SIZE": 4,
        "LEARNING_RATE": 0.002, "DEVICE": "cpu", "SEED": 1}


def test_train_segment_evaluate(processing, small_region, tmp_path):
    inventory = f"{small_region.inventory}|layername=inventory"
    trained = processing.run("glacier_mapper:train_model", dict(
        FAST, INPUT=[str(small_region.imagery_start)], INVENTORY=inventory, ID_FIELD="id",
        DEM=str(small_region.dem), OUTPUT_MODEL=str(tmp_path / "model"),
        OUTPUT_CURVE=str(tmp_path / "curve.gpkg"), OUTPUT_REPORT=str(tmp_path / "training.html")))
    assert trained["OUTPUT_MODEL"].endswith("model.gmm")  # the extension is added
    curve = QgsVectorLayer(trained["OUTPUT_CURVE"], "c", "ogr")
    rows = sorted((f["epoch"], f["best"], f["val_iou"]) for f in curve.getFeatures())
    assert [r[0] for r in rows] == [1, 2] and [r[0] for r in rows if r[1]] == [trained["BEST_EPOCH"]]
    assert max(r[2] for r in rows) == pytest.approx(trained["VAL_IOU"])
    report = (tmp_path / "training.html").read_text(encoding="utf-8")
    assert report.count("data:image/png;base64,") == 2 and "Reliability" in report
    import shutil
    trained["OUTPUT_MODEL"] = str(shutil.copy(trained["OUTPUT_MODEL"], tmp_path / "m.model"))  # read by content
    header = in_engine("import json, dataclasses; from glacier_mapper_plugin.core.segmentation.model_file import read_header; "
                       f"print(json.dumps(dataclasses.asdict(read_header({trained['OUTPUT_MODEL']!r})), default=str))")
    assert header["bands"] == ["B2", "B3", "B4", "B8", "B12", "DEM"]
    assert header["training"]["epochs"] == 2 and trained["BEST_EPOCH"] in (1, 2)
    seg = processing.run("glacier_mapper:segment_glaciers", {
        "INPUT": str(small_region.imagery_start), "DEM": str(small_region.dem),
        "MODEL": trained["OUTPUT_MODEL"], "TILE_SIZE": 128, "OVERLAP": 32,
        "OUTPUT_PROBABILITY": str(tmp_path / "p.tif"), "OUTPUT_MASK": str(tmp_path / "m.tif"),
        "OUTPUT_POLYGONS": str(tmp_path / "g.gpkg")})
    ev = processing.run("glacier_mapper:evaluate_segmentation", {
        "PREDICTION": seg["OUTPUT_PROBABILITY"], "INVENTORY": inventory, "ID_FIELD": "id",
        "QUALITY": str(small_region.imagery_start),
        "OUTPUT_TABLE": str(tmp_path / "metrics.gpkg"), "OUTPUT": str(tmp_path / "joined.gpkg")})
    assert 0 <= ev["IOU"] <= 1 and 0 <= ev["ACCURACY"] <= 1
    table = QgsVectorLayer(ev["OUTPUT_TABLE"], "t", "ogr")
    assert table.featureCount() == 3
    assert {"area_inventory_km2", "area_predicted_km2", "recall", "masked_fraction",
            "fp_0_10m_km2", "fp_10_20m_km2", "fp_20_50m_km2"} <= set(table.fields().names())
    joined = QgsVectorLayer(ev["OUTPUT"], "j", "ogr")
    assert joined.featureCount() == 3 and "recall" in joined.fields().names()
    assert "name" in joined.fields().names()  # inventory attributes kept


def test_cross_validate_outputs(processing, small_region, tmp_path):
    res = processing.run("glacier_mapper:cross_validate", dict(
        FAST, EPOCHS=1, INPUT=[str(small_region.imagery_start)],
        INVENTORY=f"{small_region.inventory}|layername=inventory", DEM=str(small_region.dem),
        FOLDS=3, OUTPUT_FOLDER=str(tmp_path / "cv"), OUTPUT_TABLE=str(tmp_path / "cv.gpkg"),
        OUTPUT_INVENTORY=str(tmp_path / "folds.gpkg")))
    table = QgsVectorLayer(res["OUTPUT_TABLE"], "t", "ogr")
    rows = [f.attributes() for f in table.getFeatures()]
    names = table.fields().names()
    assert [r[names.index("subregion")] for r in rows] == ["fold 1", "fold 2", "fold 3", "mean", "std"]
    for col in ("patches", "glaciers", "accuracy", "iou", "precision", "recall", "f1"):
        assert col in names
    folds = QgsVectorLayer(res["OUTPUT_INVENTORY"], "f", "ogr")
    assert sorted(f["fold"] for f in folds.getFeatures()) == [1, 2, 3]
    assert len(res["PREDICTIONS"]) == 1


def test_training_errors_name_the_parameter(processing, small_region, tmp_path):
    with pytest.raises(QgsProcessingException, match="ID_FIELD"):
        processing.run("glacier_mapper:train_model", dict(
            FAST, INPUT=[str(small_region.imagery_start)], ID_FIELD="RGIId",
            INVENTORY=f"{small_region.inventory}|layername=inventory",
            OUTPUT_MODEL=str(tmp_path / "m.gmm")))
    with pytest.raises(QgsProcessingException, match="no band for DEM"):
        processing.run("glacier_mapper:train_model", dict(
            FAST, INPUT=[str(small_region.imagery_start)], BANDS="B2,B3,DEM",
            INVENTORY=f"{small_region.inventory}|layername=inventory",
            OUTPUT_MODEL=str(tmp_path / "m.gmm")))
    assert not (tmp_path / "m.gmm").exists()
