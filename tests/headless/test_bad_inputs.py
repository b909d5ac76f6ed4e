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
