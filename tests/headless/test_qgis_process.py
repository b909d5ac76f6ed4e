"""Tier 3: the installed plugin driven by `qgis_process` in a subprocess, as a user's script."""
import json
import os
import shutil
import subprocess

import pytest
import rasterio

from tests.conftest import in_engine

QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")


def qgis_process(*args, timeout=300, cwd=None):
    if QGIS_PROCESS is None:
        pytest.fail("qgis_process not found: run `make setup`")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # pytest-qgis points QGIS at a throw-away profile; the user's default profile is the
    # one that holds the installed plugin.
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    # ... and the record of where its engine is, as `make setup` (or install_engine) wrote it.
    env.pop("GLACIER_MAPPER_ENGINE", None)
    return subprocess.run([QGIS_PROCESS, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd)


def test_plugin_is_installed_and_enabled():
    out = qgis_process("plugins")
    assert out.returncode == 0, out.stderr
    line = next((ln for ln in out.stdout.splitlines() if "glacier_mapper_plugin" in ln), "")
    assert line.strip().startswith("*"), f"plugin not enabled in the profile: {out.stdout}"


def test_help_lists_parameters():
    out = qgis_process("help", "glacier_mapper:synthetic_region")
    assert out.returncode == 0, out.stderr
    for name in ("OUTPUT_FOLDER", "SEED", "SIZE_KM", "N_GLACIERS", "START_YEAR", "END_YEAR"):
        assert name in out.stdout


def test_json_run_writes_the_region(tmp_path):
    out = qgis_process("--json", "run", "glacier_mapper:synthetic_region", "--",
                       f"OUTPUT_FOLDER={tmp_path}", "SEED=3", "SIZE_KM=2", "N_GLACIERS=2",
                       "START_YEAR=2016", "END_YEAR=2022")
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout)
    results = result["results"]
    assert results["GLACIER_COUNT"] == 2
    assert results["IMAGERY_END"].endswith(".tif") and "2022" in results["IMAGERY_END"]
    with rasterio.open(results["IMAGERY_START"]) as src:
        assert src.count == 6 and src.crs.to_epsg() == 32632
        assert src.tags()["DATE"].startswith("2016")
    assert any("true regional rate" in line for line in result["log"]["info"])


def test_bad_parameter_fails_with_its_name(tmp_path):
    out = qgis_process("--json", "run", "glacier_mapper:synthetic_region", "--",
                       f"OUTPUT_FOLDER={tmp_path}", "START_YEAR=2023", "END_YEAR=2020")
    assert out.returncode != 0
    assert "END_YEAR" in out.stdout + out.stderr


def test_json_segment_run(tmp_path, region, untrained_model):
    out = qgis_process("--json", "run", "glacier_mapper:segment_glaciers", "--",
                       f"INPUT={region.imagery_end}", f"DEM={region.dem}", f"MODEL={untrained_model}",
                       "TILE_SIZE=128", "OVERLAP=32", "DEVICE=cpu",
                       f"OUTPUT_PROBABILITY={tmp_path / 'p.tif'}", f"OUTPUT_MASK={tmp_path / 'm.tif'}",
                       f"OUTPUT_POLYGONS={tmp_path / 'g.gpkg'}")
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout)
    assert result["results"]["DEVICE_USED"] == "cpu"
    assert any("device cpu" in line for line in result["log"]["info"])
    with rasterio.open(result["results"]["OUTPUT_MASK"]) as src:
        assert src.crs.to_epsg() == 32632 and src.nodata == 255


def test_json_area_change_run(tmp_path):
    from tests.algorithms.test_area_change import _inputs
    inv, s, e = _inputs(tmp_path)
    out = qgis_process("--json", "run", "glacier_mapper:area_change", "--", f"INVENTORY={inv}",
                       "ID_FIELD=rgi_id", f"START={s}", f"END={e}", "TRIM_PERCENT=0",
                       f"OUTPUT={tmp_path / 'o.gpkg'}", f"OUTPUT_SUMMARY={tmp_path / 's.gpkg'}",
                       f"OUTPUT_SIZE_CLASSES={tmp_path / 'c.gpkg'}",
                       f"OUTPUT_REPORT={tmp_path / 'r.html'}")
    assert out.returncode == 0, out.stderr + out.stdout
    results = json.loads(out.stdout)["results"]
    assert results["N_KEPT"] == 3 and results["REGIONAL_RATE"] < 0
    assert (tmp_path / "r.html").exists()


def test_json_mass_balance_prediction(tmp_path, shared_data):
    """qgis_process: train a small Mass Balance Machine on Hintereisferner bands, predict."""
    f = shared_data / "oggm_hef"
    csv_path = in_engine("import json; from tests.core.massbalance.test_model import hef_band_csv; "
                         f"print(json.dumps(str(hef_band_csv({str(f)!r}, {str(tmp_path / 'obs.csv')!r}))))")
    out = qgis_process("--json", "run", "glacier_mapper:train_mass_balance", "--",
                       f"OBSERVATIONS={csv_path}", "UNITS=mm", f"CLIMATE={f / 'histalp_merged_hef.nc'}",
                       f"DEM={f / 'hef_srtm.tif'}", "N_ESTIMATORS=30", "FOLDS=2",
                       f"OUTPUT_MODEL={tmp_path / 'm.json'}", f"OUTPUT_METRICS={tmp_path / 'metrics.gpkg'}")
    assert out.returncode == 0, out.stderr + out.stdout
    out = qgis_process("--json", "run", "glacier_mapper:predict_mass_balance", "--",
                       f"INVENTORY={f / 'Hintereisferner_RGI6.shp'}", f"MODEL={tmp_path / 'm.json'}",
                       f"CLIMATE={f / 'histalp_merged_hef.nc'}", f"DEM={f / 'hef_srtm.tif'}",
                       "START_YEAR=2002", "END_YEAR=2003", f"OUTPUT_FOLDER={tmp_path / 'mb'}",
                       f"OUTPUT={tmp_path / 'series.gpkg'}")
    assert out.returncode == 0, out.stderr + out.stdout
    assert len(json.loads(out.stdout)["results"]["RASTERS"]) == 1


@pytest.mark.parametrize("how", ["SIGINT to the process group (Ctrl-C)", "SIGTERM to qgis_process"])
def test_signals_stop_the_run_and_a_rerun_resumes(how, small_region, tmp_path, monkeypatch):
    """Stops within 10 s, exits non-zero, leaves no file in the output folder (hidden ones
    included), and the same command afterwards resumes the training where it stopped."""
    import signal
    import time
    monkeypatch.setenv("GLACIER_MAPPER_CACHE", str(tmp_path / "cache"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [QGIS_PROCESS, "run", "glacier_mapper:train_model", "--", f"INPUT={small_region.imagery_start}",
            f"INVENTORY={small_region.inventory}|layername=inventory", "ID_FIELD=id", f"DEM={small_region.dem}",
            "PATCH_SIZE=64", "ENCODER=resnet18", "EPOCHS=4", "BATCH_SIZE=2", "DEVICE=cpu", "SEED=1",
            f"OUTPUT_MODEL={out_dir / 'model.gmm'}"]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    env.pop("GLACIER_MAPPER_ENGINE", None)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "cache").rglob("*.resume")):  # the first epoch is done
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.2)
    t0 = time.monotonic()
    if how.startswith("SIGINT"):
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode != 0
    time.sleep(1.5)  # the engine, told by the kernel that its parent died, cleans up
    assert [p.name for p in out_dir.iterdir()] == []
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resuming after epoch" in out.stdout + out.stderr
    assert (out_dir / "model.gmm").exists() and not list((tmp_path / "cache").rglob("*.resume"))


def test_command_line_equals_qgis_process(region, untrained_model, tmp_path):
    """The same segmentation through `glacier-mapper segment` and `qgis_process run`: the
    same files, value for value."""
    import numpy as np
    from tests.conftest import ENGINE_PYTHON
    common = dict(INPUT=region.imagery_end, DEM=region.dem, MODEL=untrained_model, TILE_SIZE=128, OVERLAP=32,
                  DEVICE="cpu", PRECISION="fp32")
    out = qgis_process("--json", "run", "glacier_mapper:segment_glaciers", "--",
                       *[f"{k}={v}" for k, v in common.items()], f"OUTPUT_PROBABILITY={tmp_path / 'q.tif'}",
                       f"OUTPUT_MASK={tmp_path / 'qm.tif'}", f"OUTPUT_POLYGONS={tmp_path / 'qg.gpkg'}")
    assert out.returncode == 0, out.stderr[-3000:]
    cli = subprocess.run([str(ENGINE_PYTHON.parent / "glacier-mapper"), "segment", "--json",
                          *[a for k, v in common.items() for a in ("--" + k.lower().replace("_", "-"), str(v))],
                          "--output-probability", str(tmp_path / "c.tif"), "--output-mask", str(tmp_path / "cm.tif"),
                          "--output-polygons", str(tmp_path / "cg.gpkg")], capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert json.loads(cli.stdout)["GLACIER_AREA_KM2"] == pytest.approx(json.loads(out.stdout)["results"]["GLACIER_AREA_KM2"])
    for a, b in (("q.tif", "c.tif"), ("qm.tif", "cm.tif")):
        with rasterio.open(tmp_path / a) as x, rasterio.open(tmp_path / b) as y:
            px, py = dict(x.profile), dict(y.profile)
            assert str(px.pop("nodata")) == str(py.pop("nodata")) and px == py  # nan != nan
            np.testing.assert_array_equal(x.read(), y.read())


def test_segment_on_a_dask_cluster_through_qgis_process(tmp_path, region, untrained_model):
    """DASK_SCHEDULER from qgis_process: QGIS starts the engine, the engine is the Dask client
    of a real scheduler with two workers; the worker's messages reach QGIS's log and the
    mask is the one of a run without the cluster."""
    import numpy as np

    from tests.servers import DaskCluster
    common = [f"INPUT={region.imagery_end}", f"DEM={region.dem}", f"MODEL={untrained_model}", "TILE_SIZE=128",
              "OVERLAP=32", "DEVICE=cpu"]
    here = qgis_process("--json", "run", "glacier_mapper:segment_glaciers", "--", *common,
                        f"OUTPUT_PROBABILITY={tmp_path / 'p.tif'}", f"OUTPUT_MASK={tmp_path / 'm.tif'}")
    assert here.returncode == 0, here.stderr + here.stdout
    with DaskCluster(tmp_path / "dask", env={"OMP_NUM_THREADS": "1"}) as cluster:
        there = qgis_process("--json", "run", "glacier_mapper:segment_glaciers", "--", *common,
                             f"OUTPUT_PROBABILITY={tmp_path / 'q.tif'}", f"OUTPUT_MASK={tmp_path / 'n.tif'}",
                             f"DASK_SCHEDULER={cluster.address}")
    assert there.returncode == 0, there.stderr + there.stdout
    log = json.loads(there.stdout)["log"]["info"]
    assert any("Dask scheduler" in line and "2 worker(s)" in line for line in log)
    assert any("tiles in" in line for line in log)  # a worker's message, relayed
    with rasterio.open(tmp_path / "m.tif") as a, rasterio.open(tmp_path / "n.tif") as b:
        assert np.array_equal(a.read(), b.read())


def _files(folder):
    return {p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_relative_paths_resolve_against_the_callers_folder(tmp_path):
    """`qgis_process run ... START=inv_s.tif OUTPUT_REPORT=report.html` from a data folder: the
    inputs are found and the outputs written there, never in the plugin's folder."""
    from pathlib import Path
    in_engine("import json; from tests.core.change.test_area_change import write_case; "
              f"print(json.dumps(write_case({str(tmp_path)!r})))")
    plugin = Path(__file__).resolve().parents[2] / "glacier_mapper_plugin"
    before = _files(plugin)
    out = qgis_process("run", "glacier_mapper:area_change", "--", "INVENTORY=inv.gpkg|layername=glaciers",
                       "START=inv_s.tif", "END=inv_e.tif", "TRIM_PERCENT=0", "OUTPUT=change.gpkg",
                       "OUTPUT_REPORT=report.html", cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert (tmp_path / "change.gpkg").is_file() and (tmp_path / "report.html").is_file()
    assert _files(plugin) == before


def test_published_forms_through_qgis_process(tmp_path, shared_data):
    """As a user runs them, ID_FIELD and DATE_FIELD empty: area change on a GLIMS download of
    Hintereisferner (glims_polygons.shp: line types, two analyses; tests/published.py) names
    its row by glac_id and dates it by src_date; the Mass Balance Machine trains from FoG
    2026's zip (Hintereisferner 1995-2003, linked to the RGI 6 outline by glacier.csv)."""
    f = shared_data / "oggm_hef"
    made = in_engine(
        "import json; from pathlib import Path; from tests.published import glims_extract, fog_release; "
        "from tests.engine.steps.test_change import _hef_predictions; "
        f"t = Path({str(tmp_path)!r}); g = glims_extract(Path({str(shared_data)!r}), t); "
        f"s, e = _hef_predictions(Path({str(f / 'Hintereisferner_RGI6.shp')!r}), t); "
        f"z = fog_release(Path({str(shared_data)!r}), t / 'fog', form='zip', years=(1995, 2003)); "
        "print(json.dumps([str(g), str(s), str(e), str(z)]))")
    glims, start, end, release = made
    out = qgis_process("--json", "run", "glacier_mapper:area_change", "--", f"INVENTORY={glims}", f"START={start}",
                       f"END={end}", "TRIM_PERCENT=0", f"OUTPUT={tmp_path / 'o.gpkg'}",
                       f"OUTPUT_SUMMARY={tmp_path / 's.gpkg'}", f"OUTPUT_SIZE_CLASSES={tmp_path / 'c.gpkg'}",
                       f"OUTPUT_REPORT={tmp_path / 'r.html'}")
    assert out.returncode == 0, out.stderr + out.stdout
    log = " ".join(json.loads(out.stdout)["log"]["info"])
    assert "glac_id (GLIMS)" in log and "minus 5 intrnl_rock" in log and "src_date" in log
    row = in_engine("import json; from glacier_mapper_plugin.core.vector import read_layer; "
                    f"r = read_layer({str(tmp_path / 'o.gpkg')!r}).records[0]; "
                    "print(json.dumps([r['glac_id'], r['year_start']]))")
    assert row == ["G010752E46802N", pytest.approx(2003 + 210 / 365, abs=1e-6)]
    out = qgis_process("--json", "run", "glacier_mapper:train_mass_balance", "--", f"WGMS={release}",
                       f"INVENTORY={f / 'Hintereisferner_RGI6.shp'}", f"CLIMATE={f / 'histalp_merged_hef.nc'}",
                       f"DEM={f / 'hef_srtm.tif'}", "N_ESTIMATORS=30", "FOLDS=2",
                       f"OUTPUT_MODEL={tmp_path / 'm.json'}", f"OUTPUT_METRICS={tmp_path / 'metrics.gpkg'}")
    assert out.returncode == 0, out.stderr + out.stdout
    log = " ".join(json.loads(out.stdout)["log"]["info"])
    assert "FoG 2025+ layout" in log and "1 by RGI/GLIMS link" in log
    assert (tmp_path / "m.json").exists()


def test_enumerations_take_their_index_as_qgis_process_help_lists_them(tmp_path, region, untrained_model):
    """DEVICE=3 is DEVICE=cpu (the index `qgis_process help` shows); an index past the options
    is refused naming DEVICE (issue 25, item 5)."""
    common = [f"INPUT={region.imagery_end}", f"DEM={region.dem}", f"MODEL={untrained_model}", "TILE_SIZE=128",
              "OVERLAP=32", f"OUTPUT_MASK={tmp_path / 'm.tif'}", f"OUTPUT_POLYGONS={tmp_path / 'g.gpkg'}"]
    help_text = qgis_process("help", "glacier_mapper:segment_glaciers").stdout
    assert "3: cpu" in help_text
    out = qgis_process("--json", "run", "glacier_mapper:segment_glaciers", "--", *common, "DEVICE=3", "PRECISION=1",
                       f"OUTPUT_PROBABILITY={tmp_path / 'p.tif'}")
    assert out.returncode == 0, out.stderr + out.stdout
    assert json.loads(out.stdout)["results"]["DEVICE_USED"] == "cpu"
    out = qgis_process("run", "glacier_mapper:segment_glaciers", "--", *common, "DEVICE=9",
                       f"OUTPUT_PROBABILITY={tmp_path / 'q.tif'}")
    assert out.returncode != 0 and "DEVICE" in out.stdout + out.stderr


def test_tables_written_as_csv_keep_their_types(tmp_path):
    """A table output given as .csv gets a .csvt sidecar, so QGIS reads numbers as numbers
    (sorting, statistics, expressions), not text (issue 25, item 2)."""
    from qgis.core import QgsVectorLayer

    from tests.algorithms.test_area_change import _inputs
    inv, s, e = _inputs(tmp_path)
    out = qgis_process("--json", "run", "glacier_mapper:area_change", "--", f"INVENTORY={inv}", f"START={s}",
                       f"END={e}", "TRIM_PERCENT=0", f"OUTPUT={tmp_path / 'o.csv'}",
                       f"OUTPUT_SUMMARY={tmp_path / 's.csv'}", f"OUTPUT_SIZE_CLASSES={tmp_path / 'c.csv'}",
                       f"OUTPUT_REPORT={tmp_path / 'r.html'}")
    assert out.returncode == 0, out.stderr + out.stdout
    for name in ("o", "s", "c"):
        assert (tmp_path / f"{name}.csvt").is_file(), name
        layer = QgsVectorLayer(str(tmp_path / f"{name}.csv"), name, "ogr")
        assert layer.isValid() and layer.featureCount() > 0
        numeric = {f.name() for f in layer.fields() if f.isNumeric()}
        assert numeric, (name, [f.typeName() for f in layer.fields()])
    summary = QgsVectorLayer(str(tmp_path / "s.csv"), "s", "ogr")
    kinds = {f.name(): f.typeName().lower() for f in summary.fields()}
    assert any(k.startswith("n_") and v.startswith("integer") for k, v in kinds.items()), kinds
    assert any(v == "real" for v in kinds.values()), kinds


def test_a_model_left_in_a_temporary_file_is_warned_of(small_region, tmp_path):
    """OUTPUT_MODEL left at QGIS's default (a temporary file QGIS deletes when it closes) is
    warned of before training; a named file is not (issue 25, item 6)."""
    common = [f"INPUT={small_region.imagery_start}", f"INVENTORY={small_region.inventory}|layername=inventory",
              "ID_FIELD=id", f"DEM={small_region.dem}", "PATCH_SIZE=64", "ENCODER=resnet18", "EPOCHS=1",
              "BATCH_SIZE=2", "DEVICE=cpu", "SEED=1"]
    warned = "OUTPUT_MODEL goes to a temporary file"
    out = qgis_process("--json", "run", "glacier_mapper:train_model", "--", *common, "OUTPUT_MODEL=TEMPORARY_OUTPUT")
    assert out.returncode == 0, out.stderr + out.stdout
    assert warned in out.stdout + out.stderr
    out = qgis_process("--json", "run", "glacier_mapper:train_model", "--", *common,
                       f"OUTPUT_MODEL={tmp_path / 'kept.gmm'}")
    assert out.returncode == 0 and warned not in out.stdout + out.stderr
