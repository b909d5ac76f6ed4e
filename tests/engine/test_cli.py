"""`glacier-mapper <step>`: every step's --help, names as in QGIS, a run, errors, Ctrl-C."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio

from glacier_mapper_plugin.engine.cli import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "glacier-mapper"
STEPS = ["synthetic-region", "acquire", "train", "crossval", "segment", "evaluate", "area-change",
         "train-mb", "predict-mb"]


def cli(*args, timeout=600, **kw):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)


def test_every_step_is_there_with_the_qgis_names():
    assert sorted(s["cli"] for s in load_spec()) == sorted(STEPS)
    out = cli("--help")
    assert out.returncode == 0 and all(step in out.stdout for step in STEPS)


@pytest.mark.parametrize("step", STEPS)
def test_help_per_step(step):
    out = cli(step, "--help")
    assert out.returncode == 0, out.stderr
    spec = next(s for s in load_spec() if s["cli"] == step)
    for p in spec["parameters"]:
        assert "--" + p["name"].lower().replace("_", "-") in out.stdout
    assert "--json" in out.stdout


def test_run_json_and_progress_on_stderr(tmp_path):
    out = cli("synthetic-region", "--output-folder", tmp_path / "r", "--size-km", 2, "--n-glaciers", 2, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert Path(result["IMAGERY_END"]).is_file() and "%]" in out.stderr and "peak memory" in out.stderr
    seg = cli("segment", "--input", result["IMAGERY_END"], "--dem", result["DEM"], "--model", "/nonexistent.gmm",
              "--output-probability", tmp_path / "p.tif")
    assert seg.returncode == 1 and "error:" in seg.stderr and "Traceback" not in seg.stderr
    assert not (tmp_path / "p.tif").exists()


def test_missing_required_parameter_is_named():
    out = cli("segment", "--input", "x.tif")
    assert out.returncode == 2 and "--model" in out.stderr


def test_ctrl_c_cancels_cleanly(tmp_path):
    folder = tmp_path / "big"
    proc = subprocess.Popen([str(EXE), "synthetic-region", "--output-folder", str(folder), "--size-km", "30",
                             "--n-glaciers", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 130 and "cancelled" in err
    assert not [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else True


def test_invalid_outlines_are_repaired_with_a_warning(tmp_path):
    """A self-intersecting outline (a bow tie) is repaired (make_valid) and named in the log."""
    from shapely.geometry import Polygon

    from glacier_mapper_plugin.core.vector import VectorLayer, write_gpkg
    from glacier_mapper_plugin.engine.steps.common import inventory

    class Log:
        warnings = []

        def warning(self, m):
            self.warnings.append(m)

    bow = Polygon([(0, 0), (10, 10), (10, 0), (0, 10), (0, 0)])
    path = write_gpkg(tmp_path / "inv.gpkg", [VectorLayer("inv", "EPSG:32632", [bow, None],
                                                          [dict(id="bow"), dict(id="none")])])
    log = Log()
    inv, _ = inventory({"INVENTORY": str(path), "ID_FIELD": "id"}, progress=log)
    assert inv.geometries[0].is_valid and inv.geometries[0].area == pytest.approx(50)
    assert any("repaired" in w and "bow" in w for w in log.warnings)
    assert any("without an outline" in w and "none" in w for w in log.warnings)


def test_segment_on_a_dask_cluster_from_the_command_line(tmp_path, region, untrained_model, user_cache):
    """`--dask ADDRESS`: the same probability raster as the run here with the runtime the
    cluster used (BACKEND auto is resolved once, on a worker, for every block: workers that
    measured apart made one map with several runtimes, and a CLI run that measured on its own
    differed from it in the 7th digit); an address where no scheduler listens is an error
    naming DASK_SCHEDULER, with no traceback and no file."""
    import numpy as np
    from tests.servers import DaskCluster, free_port
    common = ["segment", "--input", region.imagery_end, "--dem", region.dem, "--model", untrained_model,
              "--tile-size", 128, "--overlap", 16, "--device", "cpu"]
    with DaskCluster(tmp_path / "dask") as cluster:
        there = cli(*common, "--output-probability", tmp_path / "there.tif", "--dask", cluster.address, "--json")
    assert there.returncode == 0, there.stderr
    assert "Dask scheduler" in there.stderr and "block(s)" in there.stderr
    assert there.stderr.count("resolved once, on a worker") == 1
    used = json.loads(there.stdout)
    here = cli(*common, "--output-probability", tmp_path / "here.tif", "--json",
               "--backend", used["BACKEND_USED"], "--precision", used["PRECISION_USED"])
    assert here.returncode == 0, here.stderr
    assert json.loads(here.stdout)["BACKEND_USED"] == used["BACKEND_USED"]
    with rasterio.open(tmp_path / "here.tif") as a, rasterio.open(tmp_path / "there.tif") as b:
        assert np.array_equal(a.read(), b.read(), equal_nan=True)
    lost = cli(*common, "--output-probability", tmp_path / "lost.tif", "--dask", f"127.0.0.1:{free_port()}")
    assert lost.returncode == 1 and "DASK_SCHEDULER 127.0.0.1:" in lost.stderr and "Traceback" not in lost.stderr
    assert not (tmp_path / "lost.tif").exists() and not list(tmp_path.glob(".*"))
