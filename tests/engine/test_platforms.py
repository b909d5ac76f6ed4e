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


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def _first_file(candidates):
    return next(p for p in candidates if p.is_file())


def test_python_is_found_in_an_osgeo4w_and_a_standalone_tree(tmp_path):
    """Inside QGIS on Windows sys.executable is qgis-bin.exe; OSGeo4W's and the standalone
    installer's trees (built here as they lay out) hold Python in apps/Python312."""
    for root in (tmp_path / "OSGeo4W", tmp_path / "Program Files" / "QGIS 3.40.4"):
        qgis = _touch(root / "bin" / "qgis-bin.exe")
        python = _touch(root / "apps" / "Python312" / "python.exe")
        _touch(root / "apps" / "Python39" / "python.exe")  # an older one left beside it
        found = platforms.interpreter_candidates(str(qgis), prefix=str(root / "apps" / "qgis"),
                                                 base_prefix=str(root / "apps" / "qgis"), platform="win32",
                                                 version=(3, 12))
        assert _first_file(found) == python
        # QGIS's Python reports its own prefix: python.exe there comes first
        found = platforms.interpreter_candidates(str(qgis), prefix=str(python.parent), base_prefix=str(python.parent),
                                                 platform="win32", version=(3, 12))
        assert _first_file(found) == python


def test_python_is_found_in_qgis_app(tmp_path):
    """QGIS.app: sys.executable is Contents/MacOS/QGIS; Python lives in the bundle."""
    app = tmp_path / "Applications" / "QGIS-LTR.app" / "Contents"
    qgis = _touch(app / "MacOS" / "QGIS")
    python = _touch(app / "Frameworks" / "Python.framework" / "Versions" / "3.12" / "bin" / "python3.12")
    found = platforms.interpreter_candidates(str(qgis), prefix=str(app / "Resources"),
                                             base_prefix=str(app / "Resources"), platform="darwin", version=(3, 12))
    assert _first_file(found) == python
    mac_bin = _touch(app / "MacOS" / "bin" / "python3")  # the layout of the older official builds
    found = platforms.interpreter_candidates(str(qgis), prefix="/nowhere", base_prefix="/nowhere", platform="darwin",
                                             version=(3, 12))
    assert _first_file(found) == mac_bin


def test_python_on_linux_and_when_run_from_a_shell(tmp_path):
    python = _touch(tmp_path / "usr" / "bin" / "python3.11")
    found = platforms.interpreter_candidates("/usr/bin/qgis", prefix=str(tmp_path / "usr"),
                                             base_prefix=str(tmp_path / "usr"), platform="linux", version=(3, 11))
    assert _first_file(found) == python
    shell = platforms.interpreter_candidates(sys.executable, sys.prefix, sys.base_prefix)
    assert shell[0] == Path(sys.executable)


@pytest.mark.parametrize("platform, env, profile, engine", [
    ("win32", {"APPDATA": r"C:\Users\Åsa\AppData\Roaming", "LOCALAPPDATA": r"C:\Users\Åsa\AppData\Local"},
     r"C:\Users\Åsa\AppData\Roaming/QGIS/QGIS3/profiles/default", r"C:\Users\Åsa\AppData\Local/GlacierMapper"),
    ("darwin", {}, "/Users/asa/Library/Application Support/QGIS/QGIS3/profiles/default",
     "/Users/asa/Library/Application Support/QGIS/QGIS3/profiles/default/python/glacier_mapper_engine"),
    ("linux", {"XDG_DATA_HOME": "/data/asa"}, "/data/asa/QGIS/QGIS3/profiles/default",
     "/data/asa/QGIS/QGIS3/profiles/default/python/glacier_mapper_engine"),
])
def test_profile_and_engine_folders_per_platform(platform, env, profile, engine):
    home = Path("/Users/asa")
    got = platforms.default_profile_folder(platform, env, home)
    assert got == Path(profile)
    assert platforms.default_engine_folder(got, platform, env, home) == Path(engine)
    assert platforms.default_profile_folder(platform, env, home, qgis_major=4).parts[-3] == "QGIS4"


def test_windows_engine_folder_is_short_enough_for_torch():
    """The longest file torch installs (measured in this engine's own torch) under the default
    Windows folder stays well below Windows' 260-character path limit for a long user name
    (40 characters to spare for deeper files in later torch releases and longer names)."""
    import torch
    site = Path(torch.__file__).parent.parent
    longest = max(len(str(p.relative_to(site))) for p in Path(torch.__file__).parent.rglob("*"))
    env = {"LOCALAPPDATA": r"C:\Users\Anna-Katharina.Oberhollenzer\AppData\Local",
           "APPDATA": r"C:\Users\Anna-Katharina.Oberhollenzer\AppData\Roaming"}
    profile = platforms.default_profile_folder("win32", env)
    site_in = lambda engine: len(str(engine / "venv" / "Lib" / "site-packages")) + 1  # noqa: E731
    assert site_in(platforms.default_engine_folder(profile, "win32", env)) + longest < 260 - 40


def test_a_half_made_engine_is_made_again(tmp_path, monkeypatch):
    """An install stopped while the venv was being created leaves a folder whose python is
    missing or cannot start: the installer sees it (usable) and recreates it with --clear."""
    from glacier_mapper_plugin.engine import install
    venv = tmp_path / "venv"
    py = client.venv_python(venv)
    assert not install.usable(py)
    _touch(py)  # an empty file where the interpreter should be
    assert not install.usable(py)
    assert install.usable(Path(sys.executable))
    calls = []
    monkeypatch.setattr(install.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        subprocess.CompletedProcess(cmd, 1, "", ""))
    with pytest.raises(OSError):  # the faked venv has no pip to run: only the first call matters
        install.install(venv, tmp_path / "profile", wheelhouse=tmp_path / "none", python=Path(sys.executable))
    assert [str(sys.executable), "-m", "venv", "--clear", str(venv)] in calls


def test_macos_engines_let_apple_gpus_fall_back_to_the_cpu():
    assert platforms.engine_environment({}, ROOT, "darwin")["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    assert "PYTORCH_ENABLE_MPS_FALLBACK" not in platforms.engine_environment({}, ROOT, "linux")


@pytest.mark.parametrize("choice, platform, args", [
    ("default", "win32", []), ("default", "linux", []), ("default", "darwin", []),
    ("cuda", "win32", ["--extra-index-url", platforms.TORCH_INDEX["cuda"]]),  # PyPI's Windows torch is CPU-only
    ("cuda", "linux", []),                                                    # PyPI's Linux torch is the CUDA build
    ("cpu", "linux", ["--extra-index-url", platforms.TORCH_INDEX["cpu"]]),
    ("cpu", "win32", []),
])
def test_the_torch_build_asked_for_per_platform(choice, platform, args):
    assert platforms.torch_source(choice, platform) == args


def test_cuda_on_a_mac_is_refused_with_what_to_do_instead():
    with pytest.raises(ValueError, match="Macs have no CUDA.*DEVICE mps"):
        platforms.torch_source("cuda", "darwin")


def test_the_installer_asks_pip_for_the_cuda_build_on_windows(tmp_path, monkeypatch):
    """install(torch='cuda') on Windows (simulated) gives pip PyTorch's CUDA index; the default
    does not."""
    from glacier_mapper_plugin.engine import install
    monkeypatch.setattr(install.sys, "platform", "win32")
    monkeypatch.setattr(install, "usable", lambda py: True)
    commands = []

    class Pip:
        def __init__(self, cmd, **kw):
            commands.append(cmd)
            self.stdout, self.returncode = iter(()), 1

        def wait(self):
            return 1
    monkeypatch.setattr(install.subprocess, "Popen", Pip)
    venv = tmp_path / "venv"
    with pytest.raises(RuntimeError, match="pip failed"):
        install.install(venv, tmp_path / "profile", torch="cuda")
    assert "--extra-index-url" in commands[0] and platforms.TORCH_INDEX["cuda"] in commands[0]
    with pytest.raises(RuntimeError, match="pip failed"):
        install.install(venv, tmp_path / "profile", torch="default")
    assert platforms.TORCH_INDEX["cuda"] not in commands[1]


def test_an_output_under_another_name_of_an_input_is_refused(tmp_path, monkeypatch):
    """An output is never written over an input, whatever its name: a second name of the same
    file (a hard link here, as a case-insensitive macOS disk or a UNC path to a mapped drive
    gives one), or, on Windows, the same path in other letter case (ntpath's rules)."""
    import ntpath

    from glacier_mapper_plugin.engine import outputs
    dem = tmp_path / "DEM.tif"
    dem.write_bytes(b"not really a raster")
    other = tmp_path / "other name.tif"
    os.link(dem, other)
    with pytest.raises(ValueError, match="OUTPUT_PROBABILITY is the same file as DEM"):
        outputs.check("segment_glaciers", {"INPUT": str(tmp_path / "in.tif"), "DEM": str(dem),
                                           "OUTPUT_PROBABILITY": str(other)})
    assert not outputs.same_file(tmp_path / "dem.tif", dem)  # Linux: another file
    monkeypatch.setattr(outputs.os.path, "normcase", ntpath.normcase)  # Windows compares names so
    assert outputs.same_file(Path(r"C:\Glaciers\dem.tif"), Path(r"c:\glaciers\DEM.TIF"))
    with pytest.raises(ValueError, match="OUTPUT_PROBABILITY is the same file as DEM"):
        outputs.check("segment_glaciers", {"INPUT": str(tmp_path / "in.tif"), "DEM": str(dem),
                                           "OUTPUT_PROBABILITY": str(tmp_path / "dem.TIF")})


def test_windows_paths_resolve_as_windows_resolves_them(monkeypatch):
    """Relative file parameters against the caller's folder (drive letters, UNC shares, names
    with spaces and umlauts) with Windows' path rules (ntpath), as the engine does there."""
    import ntpath

    from glacier_mapper_plugin.engine import outputs
    monkeypatch.setattr(outputs, "os", type("WindowsOs", (), {"path": ntpath, "PathLike": os.PathLike}))
    cwd = r"C:\Users\Åsa Öberg\Glaciers"
    assert outputs._absolute(r"chips\2023 Ötztal.tif", cwd) == r"C:\Users\Åsa Öberg\Glaciers\chips\2023 Ötztal.tif"
    assert outputs._absolute(r"D:\data\dem.tif", cwd) == r"D:\data\dem.tif"
    assert outputs._absolute(r"\\nas\share\rgi7.gpkg|layername=rgi", cwd) == r"\\nas\share\rgi7.gpkg|layername=rgi"
    assert outputs._absolute(r"..\inventory.gpkg", cwd) == r"C:\Users\Åsa Öberg\inventory.gpkg"


def test_names_with_spaces_and_umlauts_round_trip_through_the_engine(tmp_path, monkeypatch):
    """The engine's messages and results are UTF-8 whatever the console's code page: a folder
    named as glaciologists name them comes back unchanged, and so do messages naming it."""
    monkeypatch.setenv(client.ENV_VAR, sys.executable)
    monkeypatch.setenv("PYTHONIOENCODING", "cp1252")  # what a Windows console would set; replaced for the engine
    folder = tmp_path / "Glaciers Ötztal" / "Mönchsjoch – Jökulsárlón"
    listener = _Quiet()
    said = []
    listener.info = said.append
    try:
        out = client.run_step("synthetic_region", {"OUTPUT_FOLDER": str(folder), "SIZE_KM": 1.0, "N_GLACIERS": 1,
                                                   "SEED": 3}, listener)
        with pytest.raises(client.EngineError, match="Jökulsárlón"):
            client.run_step("area_change", {"INVENTORY": str(folder / "nothing here.gpkg"),
                                            "START": str(folder / "a.tif"), "END": str(folder / "b.tif"),
                                            "OUTPUT": str(folder / "o.gpkg")}, _Quiet())
    finally:
        client.POOL.close()
    assert Path(out["IMAGERY_END"]).parent == folder and Path(out["IMAGERY_END"]).is_file()


def test_windows_peak_memory_from_the_process_counters():
    """The engine logs its peak memory on Windows too: GetProcessMemoryInfo's peak working set
    (a recording psapi; PROCESS_MEMORY_COUNTERS is 72 bytes on 64-bit Windows)."""
    calls = []

    class Psapi:
        def GetProcessMemoryInfo(self, process, counters, size):  # noqa: N802 (the Win32 name)
            calls.append((process.value, size))
            counters._obj.PeakWorkingSetSize = 1536 * 1024 ** 2
            return 1
    assert platforms.windows_peak_memory_mb(Psapi()) == 1536.0
    assert calls == [(2 ** 64 - 1, 72)]  # GetCurrentProcess's pseudo-handle


def test_peak_memory_on_macos_is_read_in_bytes(monkeypatch):
    """ru_maxrss is kB on Linux and bytes on macOS: without /proc the macOS branch gives MB."""
    import builtins

    from glacier_mapper_plugin.engine import runner
    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc"):
            raise OSError("no /proc on macOS")
        return real_open(path, *a, **k)
    monkeypatch.setattr(builtins, "open", no_proc)
    rss = __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss
    monkeypatch.setattr(runner.sys, "platform", "darwin")
    assert runner.peak_memory_mb() == pytest.approx(rss / 1024.0 ** 2, rel=0.05)
    monkeypatch.setattr(runner.sys, "platform", "win32")  # the runner asks Windows' counters there
    monkeypatch.setattr(platforms, "windows_peak_memory_mb", lambda: 1234.0)
    assert runner.peak_memory_mb() == 1234.0


def test_windows_asks_the_engine_to_stop_with_ctrl_break():
    """terminate() on Windows kills at once (no cleanup): there the engine runs in a process
    group of its own, without a console window, and is asked with Ctrl-Break."""
    class Proc:
        def __init__(self):
            self.calls = []

        def send_signal(self, sig):
            self.calls.append(("signal", sig))

        def terminate(self):
            self.calls.append("terminate")
    windows, linux = Proc(), Proc()
    platforms.ask_to_stop(windows, "win32")
    platforms.ask_to_stop(linux, "linux")
    assert windows.calls == [("signal", getattr(signal, "CTRL_BREAK_EVENT", 1))] and linux.calls == ["terminate"]
    assert platforms.creation_flags("win32") == 0x08000200 and platforms.creation_flags("darwin") == 0


def test_the_engine_cancels_cleanly_on_sigbreak(tmp_path):
    """The real engine where the system has SIGBREAK (Windows; here SIGUSR1 stands in for it):
    the signal cancels the running job, its partial files are removed, the engine says so and
    exits 130, as with SIGTERM."""
    import json
    code = ("import signal, sys; signal.SIGBREAK = signal.SIGUSR1; "
            "from glacier_mapper_plugin.engine import runner; sys.exit(runner.main(['serve', '--idle-exit', '60']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=client._engine_env(), cwd=str(tmp_path))
    folder = tmp_path / "big"
    assert json.loads(proc.stdout.readline()) == {"ready": True}
    proc.stdin.write(json.dumps({"step": "synthetic_region", "params": {"OUTPUT_FOLDER": str(folder), "SIZE_KM": 30.0,
                                                                        "N_GLACIERS": 50}, "cwd": str(tmp_path)}) + "\n")
    proc.stdin.flush()
    first = json.loads(proc.stdout.readline())  # the job has started
    assert {"progress", "info"} & set(first), first
    time.sleep(1.0)
    proc.send_signal(signal.SIGUSR1)
    lines = [json.loads(line) for line in proc.stdout if line.startswith("{")]
    assert proc.wait(timeout=30) == 130
    assert any("cancelled" in json.dumps(m) and "SIGUSR1" in json.dumps(m) for m in lines), lines[-3:]
    leftovers = [p.name for p in folder.rglob("*")] if folder.exists() else []
    assert not [n for n in leftovers if "partial" in n or n.endswith(".tmp")], leftovers


@pytest.mark.parametrize("platform, choice, gb", [
    ("linux", "default", 6.2), ("linux", "cuda", 6.2), ("linux", "cpu", 1.8), ("win32", "default", 1.8),
    ("win32", "cuda", 5.0), ("darwin", "default", 1.2), ("freebsd14", "default", 6.2)])
def test_the_engine_size_said_per_platform_and_torch(platform, choice, gb):
    assert platforms.install_size_gb(choice, platform) == gb


def test_a_disk_too_small_is_refused_before_any_download(tmp_path, monkeypatch):
    """First run on a nearly full disk: refused naming the folder, the size and what to do;
    nothing created. With room: the installer says where and how large."""
    from collections import namedtuple

    from glacier_mapper_plugin.engine import install
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(install.shutil, "disk_usage", lambda path: usage(100e9, 99e9, 1e9))
    monkeypatch.setattr(install.subprocess, "run", lambda *a, **k: pytest.fail("no venv may be made"))
    venv = tmp_path / "new" / "venv"
    with pytest.raises(RuntimeError, match=r"not enough disk space for the engine in .*venv: it needs about "
                                           r"\d+(\.\d+)? GB .* and 1.0 GB are free there; .* ENGINE_FOLDER"):
        install.install(venv, tmp_path / "profile")
    assert not venv.exists()
    monkeypatch.setattr(install.shutil, "disk_usage", lambda path: usage(100e9, 50e9, 50e9))
    said = install.check_disk(venv, "cpu")
    assert said.startswith(f"installing the engine into {venv}: about ") and "50 GB free" in said


def test_the_engine_check_ends_with_a_self_test_that_names_the_device():
    out = subprocess.run([sys.executable, "-m", "glacier_mapper_plugin.engine.check"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("self-test passed: a U-Net ran on ") and "torch " in last
