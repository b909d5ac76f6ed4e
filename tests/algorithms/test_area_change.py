import pytest
from qgis.core import QgsProcessingException, QgsVectorLayer

from tests.conftest import in_engine


def _inputs(tmp_path, n=3, name="inv"):
    return in_engine("import json; from tests.core.change.test_area_change import write_case; "
                     f"print(json.dumps(write_case({str(tmp_path)!r}, {n}, {name!r})))")


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
    # Numbers are numbers in every table (they were written as text once).
    def types(layer):
        return {f.name(): f.typeName().lower() for f in layer.fields()}
    numeric = ("real", "double", "integer", "integer64", "int8", "int16", "int32", "int64")
    for name in ("rate_pct_yr", "area_start_km2", "recall", "masked_end"):
        assert types(layer)[name] in numeric, (name, types(layer)[name])
    for name in ("rate_pct_yr", "n_kept", "area_share_kept", "rate_km2_yr"):
        assert types(summary)[name] in numeric, (name, types(summary)[name])
    assert types(classes)["n"] in numeric and types(classes)["size_class"] in ("string", "text")
    assert "ensemble" not in report  # the ± comes from the outline buffer here


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


def test_only_output_is_needed(processing, tmp_path):
    """The summary, size classes and report are optional outputs: a headless run with only
    OUTPUT works and writes nothing else."""
    inv, s, e = _inputs(tmp_path)
    res = processing.run("glacier_mapper:area_change", {
        "INVENTORY": inv, "ID_FIELD": "rgi_id", "START": [s], "END": [e], "TRIM_PERCENT": 0,
        "OUTPUT": str(tmp_path / "only.gpkg"), "OUTPUT_SUMMARY": None, "OUTPUT_SIZE_CLASSES": None,
        "OUTPUT_REPORT": None})
    assert QgsVectorLayer(res["OUTPUT"], "o", "ogr").featureCount() == 3
    assert not res.get("OUTPUT_SUMMARY") and not list(tmp_path.glob("*.html"))


def test_the_report_names_the_users_layer(processing, tmp_path):
    """INVENTORY given as a layer of the project: the report names it (not the temporary
    export QGIS hands the engine), its id column and the software."""
    inv, s, e = _inputs(tmp_path)
    layer = QgsVectorLayer(f"{inv}|layername=glaciers", "Ötztal inventory 2015", "ogr")
    assert layer.isValid()
    processing.run("glacier_mapper:area_change", {
        "INVENTORY": layer, "START": [s], "END": [e], "TRIM_PERCENT": 0, "OUTPUT": str(tmp_path / "out.gpkg"),
        "OUTPUT_REPORT": str(tmp_path / "report.html")})
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Ötztal inventory 2015" in report and "processing_" not in report.split("<h2>Parameters")[0]
    assert "glaciers identified by its column rgi_id" in report
    assert "none: clouds and shadow not masked" in report  # these predictions name no imagery
    assert "Glacier Mapper" in report and "GDAL" in report
