import numpy as np
import pytest
import rasterio
from qgis.core import (QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback,
                       QgsProject, QgsRasterLayer, QgsVectorLayer)


def _params(region, model, tmp_path, **extra):
    params = {"INPUT": str(region.imagery_end), "DEM": str(region.dem), "MODEL": str(model),
              "TILE_SIZE": 128, "OVERLAP": 32, "BATCH_SIZE": 4, "PRECISION": "fp32",
              "OUTPUT_PROBABILITY": str(tmp_path / "prob.tif"),
              "OUTPUT_MASK": str(tmp_path / "mask.tif"),
              "OUTPUT_POLYGONS": str(tmp_path / "glaciers.gpkg")}
    params.update(extra)
    return params


def test_run_writes_three_outputs(processing, region, untrained_model, tmp_path):
    res = processing.run("glacier_mapper:segment_glaciers", _params(region, untrained_model, tmp_path))
    prob = QgsRasterLayer(res["OUTPUT_PROBABILITY"], "p")
    assert prob.isValid() and prob.crs().authid() == "EPSG:32632" and prob.width() == 400
    assert QgsRasterLayer(res["OUTPUT_MASK"], "m").isValid()
    polys = QgsVectorLayer(res["OUTPUT_POLYGONS"], "g", "ogr")
    assert polys.isValid() and "area_km2" in polys.fields().names()
    assert res["DEVICE_USED"] == "cpu" and res["PRECISION_USED"] == "fp32"
    assert res["GLACIER_AREA_KM2"] >= 0


def test_mask_layer_in_another_crs(processing, region, untrained_model, tmp_path):
    """An EPSG:4326 inventory restricts the run to tiles near its glaciers."""
    inv4326 = tmp_path / "inv4326.gpkg"
    processing.run("native:reprojectlayer", {"INPUT": f"{region.inventory}|layername=inventory",
                                             "TARGET_CRS": "EPSG:4326", "OUTPUT": str(inv4326)})
    res = processing.run("glacier_mapper:segment_glaciers",
                         _params(region, untrained_model, tmp_path, MASK_LAYER=str(inv4326),
                                 MASK_BUFFER=20, OUTPUT_MASK=None, OUTPUT_POLYGONS=None))
    with rasterio.open(res["OUTPUT_PROBABILITY"]) as src:
        prob = src.read(1)
    with rasterio.open(region.truth_start) as src:
        truth = src.read(1)
    assert np.isfinite(prob[truth > 0]).mean() > 0.95  # glaciers (but the no-data strip) run


def test_outputs_are_styled_on_load(processing, region, untrained_model, tmp_path, provider):
    context = QgsProcessingContext()
    context.setProject(QgsProject())
    params = _params(region, untrained_model, tmp_path)
    for key in ("OUTPUT_PROBABILITY", "OUTPUT_MASK", "OUTPUT_POLYGONS"):
        context.addLayerToLoadOnCompletion(params[key], QgsProcessingContext.LayerDetails(key, context.project(), key))
    alg = provider.algorithm("segment_glaciers").create()
    _, ok = alg.run(params, context, QgsProcessingFeedback())
    assert ok
    details = context.layerToLoadOnCompletionDetails(params["OUTPUT_MASK"])
    layer = QgsRasterLayer(params["OUTPUT_MASK"], "m")
    details.postProcessor().postProcessLayer(layer, context, QgsProcessingFeedback())
    assert layer.renderer().type() == "paletted"


def test_band_mismatch_error_reaches_the_user(processing, region, untrained_model, tmp_path):
    with pytest.raises(QgsProcessingException, match="no band for DEM"):
        processing.run("glacier_mapper:segment_glaciers",
                       _params(region, untrained_model, tmp_path, DEM=None))


def test_bands_mapping_parameter(processing, region, untrained_model, tmp_path):
    res = processing.run("glacier_mapper:segment_glaciers",
                         _params(region, untrained_model, tmp_path, BANDS="B2=1,B3=2,B4=3,B8=4,B12=5",
                                 OUTPUT_POLYGONS=None))
    assert QgsRasterLayer(res["OUTPUT_PROBABILITY"], "p").isValid()


def test_parameters_serialise_for_batch_and_scripts(provider, region, untrained_model, tmp_path):
    alg = provider.algorithm("segment_glaciers")
    context = QgsProcessingContext()
    params = _params(region, untrained_model, tmp_path)
    for definition in alg.parameterDefinitions():
        value = params.get(definition.name(), definition.defaultValue())
        assert isinstance(definition.valueAsPythonString(value, context), str)
    ok, msg = alg.checkParameterValues(params, context)
    assert ok, msg


def test_cancelled_run_leaves_no_outputs(processing, region, untrained_model, tmp_path):
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run("glacier_mapper:segment_glaciers", _params(region, untrained_model, tmp_path),
                       feedback=feedback)
    assert list(tmp_path.iterdir()) == []


def test_backend_parameter_gives_the_same_map_and_says_which_ran(processing, region, untrained_model, tmp_path):
    """BACKEND through Processing: auto says what it picked; a runtime by name gives the map torch gives."""
    maps = {}
    for backend in ("torch", "onnxruntime", "auto"):
        out = tmp_path / backend
        out.mkdir()
        res = processing.run("glacier_mapper:segment_glaciers", _params(
            region, untrained_model, out, BACKEND=backend, OUTPUT_MASK=None, OUTPUT_POLYGONS=None))
        assert res["BACKEND_USED"] in ("torch", "onnxruntime", "openvino")
        assert backend == "auto" or res["BACKEND_USED"] == backend
        with rasterio.open(res["OUTPUT_PROBABILITY"]) as src:
            maps[backend] = src.read(1)
    for backend in ("onnxruntime", "auto"):
        ok = np.isfinite(maps["torch"])
        assert np.abs(maps[backend] - maps["torch"])[ok].mean() <= 0.002


def test_onnxruntime_in_bf16_is_refused_naming_both_parameters(processing, region, untrained_model, tmp_path):
    with pytest.raises(QgsProcessingException, match="BACKEND onnxruntime runs fp32 or int8.*PRECISION"):
        processing.run("glacier_mapper:segment_glaciers", _params(
            region, untrained_model, tmp_path, BACKEND="onnxruntime", PRECISION="bf16"))
    assert not any(tmp_path.iterdir())  # refused before any work: no output


def test_int8_with_a_model_without_calibration_patches_is_refused_saying_what_to_do(
        processing, region, untrained_model, tmp_path):
    """An untrained (or older) model file has no stored training patches to quantise with."""
    with pytest.raises(QgsProcessingException, match="PRECISION int8.*no calibration windows.*train it again"):
        processing.run("glacier_mapper:segment_glaciers", _params(
            region, untrained_model, tmp_path, BACKEND="auto", PRECISION="int8"))
    with pytest.raises(QgsProcessingException, match="PRECISION int8 runs on onnxruntime or OpenVINO"):
        processing.run("glacier_mapper:segment_glaciers", _params(
            region, untrained_model, tmp_path, BACKEND="torch", PRECISION="int8"))
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def seed_members(untrained_model, tmp_path_factory):
    """MODEL and two more members of its normalisation (other seeds), as train_model MEMBERS
    3 writes them."""
    from tests.conftest import S2_DEM_BANDS, in_engine
    folder = tmp_path_factory.mktemp("ensemble")
    others = [str(folder / f"untrained_seed{s}.gmm") for s in (2, 3)]
    in_engine("from glacier_mapper_plugin.core.segmentation.model_file import new_model\n"
              f"for s, p in zip((2, 3), {others!r}):\n"
              f"    new_model(p, {S2_DEM_BANDS!r}, mean=[0.25] * 5 + [2600.0], std=[0.2] * 5 + [400.0], "
              "encoder='resnet18', seed=s)\nprint('null')")
    return [str(untrained_model)] + others


def test_ensemble_members_feed_area_change_uncertainty(processing, region, seed_members, tmp_path):
    """segment_glaciers with ENSEMBLE (train_model's MODELS list, MODEL in it too) writes the
    members' mean and each member; the members are what area_change takes as START_ENSEMBLE /
    END_ENSEMBLE, and its per-glacier sigma is their spread."""
    runs = {}
    for date, scene in (("start", region.imagery_start), ("end", region.imagery_end)):
        folder = tmp_path / date
        runs[date] = processing.run("glacier_mapper:segment_glaciers", _params(
            region, seed_members[0], folder, INPUT=str(scene), ENSEMBLE=seed_members, OUTPUT_MASK=None,
            OUTPUT_POLYGONS=None, OUTPUT_PROBABILITY=str(folder / "mean.tif"),
            OUTPUT_MEMBERS=str(folder / "members")))
        res = runs[date]
        assert res["MEMBERS_USED"] == 3 and len(res["MEMBER_PROBABILITIES"]) == 3
        assert sorted(p.name for p in (folder / "members").iterdir()) == [
            "member1_untrained.tif", "member2_untrained_seed2.tif", "member3_untrained_seed3.tif"]
        with rasterio.open(res["OUTPUT_PROBABILITY"]) as src:
            mean = src.read(1)
        members = []
        for path in res["MEMBER_PROBABILITIES"]:
            with rasterio.open(path) as src:
                members.append(src.read(1))
        np.testing.assert_allclose(mean, np.mean(members, axis=0), atol=1e-6, equal_nan=True)
    change = processing.run("glacier_mapper:area_change", {
        "INVENTORY": f"{region.inventory}|layername=inventory", "START": [runs["start"]["OUTPUT_PROBABILITY"]],
        "END": [runs["end"]["OUTPUT_PROBABILITY"]], "START_ENSEMBLE": runs["start"]["MEMBER_PROBABILITIES"],
        "END_ENSEMBLE": runs["end"]["MEMBER_PROBABILITIES"], "OUTLINE_UNCERTAINTY_PX": 0, "MIN_RECALL": 0,
        "OUTPUT": str(tmp_path / "change.gpkg")})
    sigma = [f["area_start_sigma_km2"] for f in QgsVectorLayer(change["OUTPUT"], "c", "ogr").getFeatures()]
    assert sigma and max(sigma) > 0  # the members disagree: the spread is the uncertainty


def test_output_members_without_an_ensemble_is_refused(processing, region, untrained_model, tmp_path):
    with pytest.raises(QgsProcessingException, match="OUTPUT_MEMBERS writes each ensemble member"):
        processing.run("glacier_mapper:segment_glaciers",
                       _params(region, untrained_model, tmp_path, OUTPUT_MEMBERS=str(tmp_path / "members")))
    assert not (tmp_path / "members").exists() and not (tmp_path / "prob.tif").exists()
