"""Bad or awkward inputs through `qgis_process`, as a user meets them: each run must fail with
a non-zero exit, a message naming the parameter, no traceback, and nothing left in the
output folder (hidden files included)."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import rasterio

from tests.servers import free_port

QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")


def run(algorithm, **params):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    env.pop("GLACIER_MAPPER_ENGINE", None)
    args = [QGIS_PROCESS, "run", f"glacier_mapper:{algorithm}", "--"]
    for k, v in params.items():
        for value in (v if isinstance(v, list) else [v]):
            args.append(f"{k}={value}")
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


def half_dem(region, path):
    """The region's DEM cut to its western half: it does not cover the scene."""
    with rasterio.open(region.dem) as src:
        data = src.read(1)
        profile = src.profile
    data[:, data.shape[1] // 2:] = profile.get("nodata") if profile.get("nodata") is not None else np.nan
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


CASES = {
    "segment: output is the input": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=m, OUTPUT_PROBABILITY=r.imagery_end, OUTPUT_MASK=o / "m.tif",
        OUTPUT_POLYGONS=o / "g.gpkg"), "OUTPUT_PROBABILITY is the same file as INPUT"),
    "segment: parent of an output is a file": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=m, OUTPUT_PROBABILITY=t / "afile" / "p.tif",
        OUTPUT_MASK=o / "m.tif", OUTPUT_POLYGONS=o / "g.gpkg"), "OUTPUT_PROBABILITY: cannot write"),
    "segment: MODEL is not a model": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=t / "afile", OUTPUT_PROBABILITY=o / "p.tif",
        OUTPUT_MASK=o / "m.tif", OUTPUT_POLYGONS=o / "g.gpkg"), "MODEL:"),
    "segment: DEM covers half of INPUT": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=half_dem(r, t / "half_dem.tif"), MODEL=m, OUTPUT_PROBABILITY=o / "p.tif",
        OUTPUT_MASK=o / "m.tif", OUTPUT_POLYGONS=o / "g.gpkg"), "DEM covers only"),
    "segment: DASK_SCHEDULER where no scheduler listens": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=m, OUTPUT_PROBABILITY=o / "p.tif", OUTPUT_MASK=o / "m.tif",
        OUTPUT_POLYGONS=o / "g.gpkg", DASK_SCHEDULER=f"127.0.0.1:{free_port()}"),
        "DASK_SCHEDULER 127.0.0.1:"),
    "train: OUTPUT_MODEL cannot be written (checked before training)": ("train_model", lambda r, m, o, t: dict(
        INPUT=r.imagery_start, INVENTORY=f"{r.inventory}|layername=inventory", DEM=r.dem, EPOCHS=50,
        OUTPUT_MODEL=t / "afile" / "m.gmm"), "OUTPUT_MODEL: cannot write"),
    "train: ENCODER_WEIGHTS a model of another encoder": ("train_model", lambda r, m, o, t: dict(
        INPUT=r.imagery_start, INVENTORY=f"{r.inventory}|layername=inventory", DEM=r.dem, ENCODER="resnet34",
        ENCODER_WEIGHTS=m, OUTPUT_MODEL=o / "m.gmm"), "ENCODER_WEIGHTS: "),
    "train: ENCODER_WEIGHTS a file that is no model": ("train_model", lambda r, m, o, t: dict(
        INPUT=r.imagery_start, INVENTORY=f"{r.inventory}|layername=inventory", DEM=r.dem,
        ENCODER_WEIGHTS=t / "afile", OUTPUT_MODEL=o / "m.gmm"), "ENCODER_WEIGHTS: "),
    "evaluate: a DEM as PREDICTION": ("evaluate_segmentation", lambda r, m, o, t: dict(
        PREDICTION=r.dem, INVENTORY=f"{r.inventory}|layername=inventory", OUTPUT_TABLE=o / "t.gpkg",
        OUTPUT=o / "j.gpkg"), "PREDICTION: values from"),
    "evaluate: a scene as PREDICTION": ("evaluate_segmentation", lambda r, m, o, t: dict(
        PREDICTION=r.imagery_end, INVENTORY=f"{r.inventory}|layername=inventory", OUTPUT_TABLE=o / "t.gpkg",
        OUTPUT=o / "j.gpkg"), "PREDICTION has 6 bands"),
    "area change: a DEM as START": ("area_change", lambda r, m, o, t: dict(
        INVENTORY=f"{r.inventory}|layername=inventory", START=r.dem, END=r.dem, OUTPUT=o / "a.gpkg",
        OUTPUT_SUMMARY=o / "s.gpkg", OUTPUT_SIZE_CLASSES=o / "c.gpkg", OUTPUT_REPORT=o / "r.html"),
        "START: values from"),
    "area change: ensembles with chips": ("area_change", lambda r, m, o, t: dict(
        INVENTORY=f"{r.inventory}|layername=inventory", START=[r.truth_start, r.truth_start],
        END=[r.truth_end, r.truth_end], START_ENSEMBLE=r.truth_start, END_ENSEMBLE=r.truth_end,
        OUTPUT=o / "a.gpkg", OUTPUT_SUMMARY=o / "s.gpkg", OUTPUT_SIZE_CLASSES=o / "c.gpkg"),
        "START_ENSEMBLE/END_ENSEMBLE"),
    "acquire: a date in words": ("acquire_imagery", lambda r, m, o, t: dict(
        INVENTORY=f"{r.inventory}|layername=inventory", DATE="1 Sept 2023", OUTPUT_FOLDER=o / "chips",
        OUTPUT=o / "t.gpkg"), "DATE"),
    "acquire: the STAC API is down": ("acquire_imagery", lambda r, m, o, t: dict(
        INVENTORY=f"{r.inventory}|layername=inventory", DATE="2023-09-01",
        STAC_URL=f"http://127.0.0.1:{free_port()}", OUTPUT_FOLDER=o / "chips", OUTPUT=o / "t.gpkg"), "STAC_URL"),
    "acquire: output folder is the inventory": ("acquire_imagery", lambda r, m, o, t: dict(
        INVENTORY=f"{r.inventory}|layername=inventory", DATE="2023-09-01", OUTPUT_FOLDER=r.inventory,
        OUTPUT=o / "t.gpkg"), "OUTPUT_FOLDER is the same file as INVENTORY"),
}


def _moved_layer(region, t, name, dx=200_000.0, duplicate_first=False):
    """The region's inventory moved `dx` metres east (or with its first outline twice), as a
    GeoPackage written by the engine's interpreter (QGIS's process imports no shapely)."""
    from tests.conftest import in_engine
    path = t / f"{name}.gpkg"
    in_engine("from shapely import affinity; from glacier_mapper_plugin.core.vector import read_layer, write_gpkg; "
              f"l = read_layer({str(region.inventory)!r}, 'inventory'); "
              f"l.geometries = [affinity.translate(g, {dx}, 0) for g in l.geometries]; "
              + ("l.geometries.append(l.geometries[0]); l.records.append(dict(l.records[0], id='copy')); "
                 if duplicate_first else "")
              + f"write_gpkg({str(path)!r}, [l]); print('null')")
    return f"{path}|layername={'inventory'}"


def far_dem(region, path, dx=100_000.0):
    """The region's DEM 100 km east of the glaciers."""
    with rasterio.open(region.dem) as src:
        data, profile = src.read(1), src.profile
    profile["transform"] = profile["transform"] * rasterio.Affine.translation(dx / profile["transform"].a, 0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def a_prediction(region, path):
    """A probability raster as segment_glaciers writes it (one band, 'glacier probability')."""
    with rasterio.open(region.truth_end) as src:
        profile = dict(src.profile, count=1, dtype="float32", nodata=None)
        data = (src.read(1) > 0).astype("float32")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, "glacier probability")
    return path


def _null_ids(region, t):
    """The region's inventory with an id column that is NULL for every glacier."""
    from tests.conftest import in_engine
    path = t / "null_ids.gpkg"
    in_engine("from glacier_mapper_plugin.core.vector import read_layer, write_gpkg; "
              f"l = read_layer({str(region.inventory)!r}, 'inventory'); "
              "types = dict(l.field_types(), glacier_code=str); "
              "l.records = [dict(r, glacier_code=None) for r in l.records]; l.fields = types; "
              f"write_gpkg({str(path)!r}, [l]); print('null')")
    return f"{path}|layername=inventory"


def rgb_model(path):
    """A model of other bands than the region's models (B2, B3, B4 only)."""
    from tests.conftest import in_engine
    in_engine("from glacier_mapper_plugin.core.segmentation.model_file import new_model; "
              f"new_model({str(path)!r}, ['B2', 'B3', 'B4'], encoder='resnet18'); print('null')")
    return path


CASES.update({
    "segment: a GeoTIFF named .gpkg": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=m, OUTPUT_PROBABILITY=o / "p.tif", OUTPUT_MASK=o / "m.gpkg"),
        "OUTPUT_MASK: m.gpkg would hold a GeoTIFF under another file type's name: end it with .tif"),
    "segment: an ENSEMBLE member of other bands": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=m, ENSEMBLE=rgb_model(t / "rgb.gmm"), OUTPUT_PROBABILITY=o / "p.tif",
        OUTPUT_MEMBERS=o / "members"), "ENSEMBLE: rgb.gmm reads bands B2, B3, B4"),
    "segment: an ENSEMBLE file that is no model": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=m, ENSEMBLE=t / "afile", OUTPUT_PROBABILITY=o / "p.tif"), "ENSEMBLE: "),
    "segment: OUTPUT_MEMBERS without ENSEMBLE": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=m, OUTPUT_PROBABILITY=o / "p.tif", OUTPUT_MEMBERS=o / "members"),
        "OUTPUT_MEMBERS writes each ensemble member's probability"),
    "train: a model named .txt": ("train_model", lambda r, m, o, t: dict(
        INPUT=r.imagery_start, INVENTORY=f"{r.inventory}|layername=inventory", DEM=r.dem, OUTPUT_MODEL=o / "m.txt"),
        "OUTPUT_MODEL: m.txt would hold a model file under another file type's name: end it with .gmm"),
    "area change: OUTPUT in a folder that is read-only": ("area_change", lambda r, m, o, t: dict(
        INVENTORY=f"{r.inventory}|layername=inventory", START=r.truth_start, END=r.truth_end,
        OUTPUT="/sys/area_change.gpkg", OUTPUT_REPORT=o / "r.html"),
        "OUTPUT: cannot write to /sys: the folder is read-only for you"),
    "area change: ID_FIELD empty for every glacier": ("area_change", lambda r, m, o, t: dict(
        INVENTORY=_null_ids(r, t), ID_FIELD="glacier_code", START=r.truth_start, END=r.truth_end,
        OUTPUT=o / "a.gpkg"), "ID_FIELD: INVENTORY's column 'glacier_code' is empty (NULL) for every glacier"),
    "train: two INPUT rasters, one without the model's bands": ("train_model", lambda r, m, o, t: dict(
        INPUT=[r.imagery_start, r.dem], INVENTORY=f"{r.inventory}|layername=inventory",
        OUTPUT_MODEL=o / "m.gmm"), "the raster dem.tif has no band for"),
    "segment: MASK_LAYER 200 km away": ("segment_glaciers", lambda r, m, o, t: dict(
        INPUT=r.imagery_end, DEM=r.dem, MODEL=m, MASK_LAYER=_moved_layer(r, t, "far"), OUTPUT_PROBABILITY=o / "p.tif",
        OUTPUT_MASK=o / "m.tif"), "MASK_LAYER: none of its"),
    "evaluate: INVENTORY 200 km from PREDICTION": ("evaluate_segmentation", lambda r, m, o, t: dict(
        PREDICTION=a_prediction(r, t / "p.tif"), INVENTORY=_moved_layer(r, t, "far"), OUTPUT_TABLE=o / "t.gpkg",
        OUTPUT=o / "j.gpkg"),
        "INVENTORY and PREDICTION do not overlap"),
    "area change: INVENTORY 200 km from START and END": ("area_change", lambda r, m, o, t: dict(
        INVENTORY=_moved_layer(r, t, "far"), START=r.truth_start, END=r.truth_end, OUTPUT=o / "a.gpkg"),
        "INVENTORY and START do not overlap"),
    "area change: the same outline twice": ("area_change", lambda r, m, o, t: dict(
        INVENTORY=_moved_layer(r, t, "twice", dx=0.0, duplicate_first=True), START=r.truth_start, END=r.truth_end,
        OUTPUT=o / "a.gpkg"), "appear more than once"),
    "acquire: DEM 100 km away": ("acquire_imagery", lambda r, m, o, t: dict(
        INVENTORY=f"{r.inventory}|layername=inventory", DATE="2023-09-01", DEM=far_dem(r, t / "far_dem.tif"),
        OUTPUT_FOLDER=o / "chips", OUTPUT=o / "t.gpkg"), "none of the glaciers"),
    "acquire: DEM that does not exist": ("acquire_imagery", lambda r, m, o, t: dict(
        INVENTORY=f"{r.inventory}|layername=inventory", DATE="2023-09-01", DEM=t / "no_such_dem.tif",
        OUTPUT_FOLDER=o / "chips", OUTPUT=o / "t.gpkg"), "DEM: "),
    "train: a probability raster as INPUT": ("train_model", lambda r, m, o, t: dict(
        INPUT=a_prediction(r, t / "p.tif"), INVENTORY=f"{r.inventory}|layername=inventory",
        OUTPUT_MODEL=o / "m.gmm"), "is a prediction of segment_glaciers"),
    "train: PATCH_SIZE larger than every raster": ("train_model", lambda r, m, o, t: dict(
        INPUT=r.imagery_start, INVENTORY=f"{r.inventory}|layername=inventory", DEM=r.dem, PATCH_SIZE=2048,
        OUTPUT_MODEL=o / "m.gmm"), "PATCH_SIZE 2048 is larger than every INPUT raster"),
})


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_cleanly(case, region, untrained_model, tmp_path):
    algorithm, make, expected = CASES[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (tmp_path / "afile").write_text("not a folder, not a model")
    before = {p: p.stat().st_mtime_ns for p in region.folder.iterdir()}
    res = run(algorithm, **make(region, untrained_model, out_dir, tmp_path))
    text = res.stdout + res.stderr
    assert res.returncode != 0, text[-2000:]
    assert expected in text, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    assert sorted(p.name for p in out_dir.iterdir()) == []
    # ... and no input was touched.
    assert {p: p.stat().st_mtime_ns for p in region.folder.iterdir()} == before
