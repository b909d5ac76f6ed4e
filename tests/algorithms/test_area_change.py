import numpy as np
import pytest
from qgis.core import QgsProcessingException, QgsVectorLayer

from tests.core.test_area_change import squares, write
from glacier_mapper_plugin.core.vector import VectorLayer, write_gpkg


def _inputs(tmp_path, n=3, name="inv"):
    inv, sl = squares(n)
    start = np.zeros((40, 30 * n + 10), np.uint8)
    for s in sl:
        start[s] = 1
    end = start.copy()
    end[sl[0][0].stop - 2:sl[0][0].stop, sl[0][1]] = 0
    gpkg = write_gpkg(tmp_path / f"{name}.gpkg", [VectorLayer(
        "glaciers", inv.crs, inv.geometries,
        [dict(rgi_id=i, inv_date="2015-08-28") for i in inv.ids])])
    return (str(gpkg), write(tmp_path / f"{name}_s.tif", start, "2015-08-28"),
            write(tmp_path / f"{name}_e.tif", end, "2023-08-28"))


def test_outputs_columns_report(processing, tmp_path):
    inv, s, e = _inputs(tmp_path)
    res = processing.run("glacier_mapper:area_change", {
        "INVENTORY": inv, "ID_FIELD": "rgi_id", "DATE_FIELD": "inv_date", "START": [s], "END": [e],
        "TRIM_PERCENT": 0, "OUTPUT": str(tmp_path / "out.gpkg"),
        "OUTPUT_SUMMARY": str(tmp_path / "summary.gpkg"),
        "OUTPUT_SIZE_CLASSES": str(tmp_path / "classes.gpkg"),
        "OUTPUT_REPORT": str(tmp_path / "report.html")})
    layer = QgsVectorLayer(res["OUTPUT"], "o", "ogr")
    names = layer.fields().names()
    for col in ("area_inventory_km2", "area_start_km2", "area_end_km2", "recall", "masked_start",
                "masked_end", "rate_km2_yr", "rate_pct_yr", "kept", "filter_reason", "rgi_id"):
        assert col in names
    feats = {f["rgi_id"]: f for f in layer.getFeatures()}
    assert feats["G0"]["rate_pct_yr"] == pytest.approx(-10 / 8.0, rel=1e-3)
    assert feats["G1"]["kept"] in (True, 1)
    assert res["N_KEPT"] == 3
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2 and "Regional rate" in report
    assert "MIN_RECALL" in report
    summary = QgsVectorLayer(res["OUTPUT_SUMMARY"], "s", "ogr")
    assert summary.featureCount() == 1
    classes = QgsVectorLayer(res["OUTPUT_SIZE_CLASSES"], "c", "ogr")
    assert classes.featureCount() >= 8


def test_batch_over_several_inventories(processing, tmp_path):
    """What the batch dialog does: one run per inventory layer, each with its own outputs."""
    rates = []
    for name, n in (("alps", 3), ("norway", 2)):
        inv, s, e = _inputs(tmp_path, n, name)
        res = processing.run("glacier_mapper:area_change", {
            "INVENTORY": inv, "ID_FIELD": "rgi_id", "START": [s], "END": [e], "TRIM_PERCENT": 0,
            "OUTPUT": str(tmp_path / f"{name}_change.gpkg"), "OUTPUT_SUMMARY": "TEMPORARY_OUTPUT",
            "OUTPUT_SIZE_CLASSES": "TEMPORARY_OUTPUT", "OUTPUT_REPORT": str(tmp_path / f"{name}.html")})
        rates.append(res["REGIONAL_RATE"])
        assert QgsVectorLayer(res["OUTPUT"], "o", "ogr").featureCount() == n
    assert rates[0] == pytest.approx(-10 / 8 / 3, rel=1e-3)
    assert rates[1] == pytest.approx(-10 / 8 / 2, rel=1e-3)


def test_half_an_ensemble_is_refused(processing, tmp_path):
    inv, s, e = _inputs(tmp_path)
    with pytest.raises(QgsProcessingException, match="START_ENSEMBLE and END_ENSEMBLE"):
        processing.run("glacier_mapper:area_change", {
            "INVENTORY": inv, "START": [s], "END": [e], "START_ENSEMBLE": [s],
            "OUTPUT": "TEMPORARY_OUTPUT", "OUTPUT_SUMMARY": "TEMPORARY_OUTPUT",
            "OUTPUT_SIZE_CLASSES": "TEMPORARY_OUTPUT"})
