"""Windows, macOS and Linux branches of engine/platforms.py, run here by simulation: the other
platform's values passed in (exit codes, a kernel32 that records its calls, a parent that
goes away), and the real engine started with the environment OSGeo4W and QGIS.app set."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glacier_mapper_plugin.engine import client, platforms

ROOT = Path(__file__).resolve().parents[2]


def test_qgis_environment_is_left_behind():
    env = {"GDAL_DATA": "C:\\OSGeo4W\\apps\\gdal\\share\\gdal", "Proj_Lib": "C:\\OSGeo4W\\share\\proj",
           "PROJ_DATA": "/Applications/QGIS.app/Contents/Resources/proj", "PYTHONHOME": "C:\\OSGeo4W\\apps\\Python312",
           "GDAL_DRIVER_PATH": "C:\\OSGeo4W\\apps\\gdal\\lib\\gdalplugins", "PYTHONPATH": "C:\\OSGeo4W\\apps\\qgis\\python",
           "PATH": "C:\\OSGeo4W\\bin", "HOME": "/Users/anna"}
    out = platforms.engine_environment(env, ROOT)
    assert not {"GDAL_DATA", "Proj_Lib", "PROJ_DATA", "PYTHONHOME", "GDAL_DRIVER_PATH"} & set(out)
    assert out["PYTHONPATH"] == str(ROOT) and out["PATH"] == env["PATH"] and out["HOME"] == env["HOME"]
    assert out["PYTHONUTF8"] == "1" and out["PYTHONIOENCODING"] == "utf-8"


def test_the_engine_ignores_qgis_proj_and_gdal_data(tmp_path, monkeypatch):
    """QGIS's PROJ and GDAL data folders (here: folders of another PROJ's proj.db, which
    cannot be read) as OSGeo4W sets them: the engine started as QGIS starts it reprojects
    correctly; the same interpreter started with those variables cannot (the test has teeth)."""
    wrong = tmp_path / "OSGeo4W" / "share" / "proj"
    wrong.mkdir(parents=True)
    (wrong / "proj.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)  # not a PROJ database
    for var in ("PROJ_LIB", "PROJ_DATA", "GDAL_DATA"):
        monkeypatch.setenv(var, str(wrong))
    code = ("import json; from rasterio.warp import transform; "  # rasterio's wheel honours PROJ_DATA
            "x, y = transform('EPSG:4326', 'EPSG:32632', [10.77], [46.8]); print(json.dumps([x[0], y[0]]))")
    polluted = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert polluted.returncode != 0
    clean = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=client._engine_env())
    assert clean.returncode == 0, clean.stderr
    x, y = eval(clean.stdout)
    assert 630_000 < x < 640_000 and 5_180_000 < y < 5_190_000
    monkeypatch.setenv(client.ENV_VAR, sys.executable)
    try:  # the real engine, through the client, as QGIS runs it
        out = client.run_step("synthetic_region", {"OUTPUT_FOLDER": str(tmp_path / "r"), "SIZE_KM": 1.0,
                                                   "N_GLACIERS": 1, "SEED": 3}, _Quiet())
    finally:
        client.POOL.close()
    check = f"import rasterio; print(rasterio.open({out['IMAGERY_END']!r}).crs.to_epsg())"
    epsg = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=client._engine_env())
    assert epsg.stdout.strip() == "32632", epsg.stderr


class _Quiet:
    def progress(self, f):
        pass

    info = warning = debug = progress

    def cancelled(self):
        return False


@pytest.mark.parametrize("code, words", [
    (3221225477, "access violation (0xC0000005)"),            # as Python reports it on Windows
    (-1073741819, "access violation (0xC0000005)"),           # signed, from some launchers
    (0xC0000409, "fail-fast stop (0xC0000409"),
    (0xC0000017, "ran out of memory (0xC0000017); the job needed more memory"),
    (0xC0000135, "reinstall the engine"),
    (0xC0000374, "crashed (Windows status 0xC0000374)"),
    (1, "exited with code 1"),
])
def test_windows_crash_codes_are_said_in_words(code, words):
    assert words in platforms.describe_exit(code, windows=True)


def test_posix_signals_are_said_in_words(monkeypatch):
    assert "out-of-memory killer" in platforms.describe_exit(-9, windows=False)
    assert platforms.describe_exit(-11, windows=False) == "it crashed (SIGSEGV)"
    monkeypatch.delattr(signal, "SIGKILL")  # as on Windows: the module has no SIGKILL
    assert platforms.describe_exit(-11, windows=False) == "it crashed (SIGSEGV)"
    assert platforms.describe_exit(2, windows=False) == "it exited with code 2"


class _Kernel32:
    """Records the Job-object calls the Windows branch makes."""

    def __init__(self):
        self.calls = []

    def CreateJobObjectW(self, attributes, name):  # noqa: N802 (the Win32 name)
        self.calls.append("create")
        return 77

    def SetInformationJobObject(self, job, info_class, info, size):  # noqa: N802
        limits = info._obj
        self.calls.append(("set", job, info_class, limits.BasicLimitInformation.LimitFlags, size))
        return 1

    def AssignProcessToJobObject(self, job, handle):  # noqa: N802
        self.calls.append(("assign", job, handle))
        return 1

    def CloseHandle(self, handle):  # noqa: N802
        self.calls.append(("close", handle))
        return 1


def test_windows_engine_is_tied_to_qgis_by_a_job_object():
    class Proc:
        _handle = 1234
    kernel32, proc = _Kernel32(), Proc()
    assert platforms.tie_to_this_process(proc, kernel32) == 77 and proc.glacier_mapper_job == 77
    # KILL_ON_JOB_CLOSE in JOBOBJECT_EXTENDED_LIMIT_INFORMATION (144 bytes on 64-bit Windows)
    assert kernel32.calls == ["create", ("set", 77, 9, 0x2000, 144), ("assign", 77, 1234)]
    assert platforms.tie_to_this_process(Proc()) is None  # here (Linux) nothing is done


def test_macos_engine_notices_its_parent_is_gone():
    parents = iter([500, 500, 500, 1])  # re-parented to launchd
    seen = []
    thread = platforms.watch_parent(lambda: seen.append("orphaned"), platform="darwin", interval=0.01,
                                    getppid=lambda: next(parents))
    thread.join(5)
    assert seen == ["orphaned"]
    assert platforms.watch_parent(lambda: None, platform="linux") is None
    assert platforms.watch_parent(lambda: None, platform="win32") is None


def test_an_orphaned_process_watching_its_parent_ends(tmp_path):
    """The macOS branch on real processes: a parent starts a child that watches it (as an
    engine on macOS does) and dies; the child ends within seconds instead of living on."""
    child = ("import os, signal, sys, time; sys.path.insert(0, %r); "
             "from glacier_mapper_plugin.engine.platforms import watch_parent; "
             "watch_parent(lambda: os._exit(3), platform='darwin', interval=0.05); "
             "print(os.getpid(), flush=True); time.sleep(60)") % str(ROOT)
    parent = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', %r], stdout=subprocess.PIPE, "
              "text=True); print(p.stdout.readline().strip(), flush=True)") % child
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=30)
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the orphaned child lived on")
