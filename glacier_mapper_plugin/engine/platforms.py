"""Where glaciologists run QGIS: Linux, Windows (OSGeo4W or the standalone installer) and macOS
(QGIS.app), QGIS 3 and QGIS 4. Everything that differs between them is here, as functions of
the platform that tests call with another platform's values. Standard library only: QGIS's
process imports it."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

# Variables OSGeo4W and QGIS.app set for QGIS's own GDAL, PROJ and Python. The engine's
# wheels bring GDAL and PROJ of their own versions: pointed at QGIS's data files they fail
# (proj.db of another layout) or load plugins built for another GDAL.
QGIS_ENVIRONMENT = ("GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA", "PYTHONHOME", "PYTHONPATH",
                    "PYTHONSTARTUP", "PYTHONUSERBASE", "QGIS_PREFIX_PATH", "GDAL_FILENAME_IS_UTF8",
                    "OSGEO4W_ROOT", "PYTHONNOUSERSITE")


def engine_environment(env: dict, plugin_parent: Path, platform: str | None = None) -> dict:
    """The engine's environment: the caller's without QGIS's GDAL/PROJ/Python settings, the
    plugin's folder as its only path, and UTF-8 for everything it prints whatever the
    console's code page (Windows' cp1252/cp850 would garble names like Mönchsjoch). On macOS
    operators Apple GPUs lack run on the CPU instead of stopping the run."""
    platform = sys.platform if platform is None else platform
    out = {k: v for k, v in env.items() if k.upper() not in QGIS_ENVIRONMENT}
    if platform == "darwin":
        out.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    out["PYTHONPATH"] = str(plugin_parent)
    out.setdefault("GDAL_PAM_ENABLED", "NO")  # no .aux.xml beside the user's inputs
    out["PYTHONUNBUFFERED"] = "1"
    out["PYTHONIOENCODING"] = "utf-8"
    out["PYTHONUTF8"] = "1"
    return out


# Windows ends a crashed process with an NTSTATUS code (an unsigned 32-bit number); POSIX
# with a negative signal number.
WINDOWS_CRASHES = {
    0xC0000005: "an access violation (0xC0000005): a native library read memory it must not",
    0xC0000409: "a fail-fast stop (0xC0000409, stack buffer overrun): a native library aborted",
    0xC00000FD: "a stack overflow (0xC00000FD)",
    0xC0000017: "it ran out of memory (0xC0000017)",
    0xC000009A: "it ran out of system resources (0xC000009A), most likely memory",
    0xC0000135: "a DLL was not found (0xC0000135): reinstall the engine (glacier_mapper:install_engine)",
    0xC0000142: "a DLL failed to initialise (0xC0000142): reinstall the engine (glacier_mapper:install_engine)",
    0xC000013A: "Ctrl-C or the console window closing (0xC000013A)",
}
OUT_OF_MEMORY = ("the job needed more memory than is free (try a smaller TILE_SIZE, BATCH_SIZE or PATCH_SIZE, "
                 "or close other programs)")


def describe_exit(code: int, windows: bool | None = None) -> str:
    """Why a process ended, in words: POSIX signals (SIGKILL most likely the out-of-memory
    killer) and Windows' crash codes, which Python reports unsigned (3221225477) or, from
    some launchers, signed (-1073741819)."""
    windows = os.name == "nt" if windows is None else windows
    if windows:
        status = code & 0xFFFFFFFF
        if status in WINDOWS_CRASHES:
            text = WINDOWS_CRASHES[status]
            return f"it crashed: {text}" + (f"; {OUT_OF_MEMORY}" if status in (0xC0000017, 0xC000009A) else "")
        if status >= 0xC0000000:
            return f"it crashed (Windows status 0x{status:08X})"
        return f"it exited with code {code}"
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == getattr(signal, "SIGKILL", None):
            return f"it was killed (SIGKILL), most likely by the system's out-of-memory killer: {OUT_OF_MEMORY}"
        return f"it crashed ({name})"
    return f"it exited with code {code}"


def tie_to_this_process(proc, kernel32=None):
    """Windows: put the engine in a Job object that kills it when this process (QGIS,
    qgis_process) ends, however it ends; the handle is kept on `proc`. Linux does this in the
    engine (PR_SET_PDEATHSIG), macOS by the engine watching its parent. Returns the job
    handle, or None where nothing was done."""
    if os.name != "nt" and kernel32 is None:
        return None
    import ctypes
    dword = ctypes.c_uint32  # dword is c_ulong: 8 bytes outside Windows, so not used
    if kernel32 is None:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)

    class IoCounters(ctypes.Structure):
        _fields_ = [(n, ctypes.c_ulonglong) for n in ("ReadOperationCount", "WriteOperationCount",
                                                      "OtherOperationCount", "ReadTransferCount",
                                                      "WriteTransferCount", "OtherTransferCount")]

    class BasicLimits(ctypes.Structure):
        _fields_ = [("PerProcessUserTimeLimit", ctypes.c_int64), ("PerJobUserTimeLimit", ctypes.c_int64),
                    ("LimitFlags", dword), ("MinimumWorkingSetSize", ctypes.c_size_t),
                    ("MaximumWorkingSetSize", ctypes.c_size_t), ("ActiveProcessLimit", dword),
                    ("Affinity", ctypes.c_size_t), ("PriorityClass", dword),
                    ("SchedulingClass", dword)]

    class ExtendedLimits(ctypes.Structure):
        _fields_ = [("BasicLimitInformation", BasicLimits), ("IoInfo", IoCounters),
                    ("ProcessMemoryLimit", ctypes.c_size_t), ("JobMemoryLimit", ctypes.c_size_t),
                    ("PeakProcessMemoryUsed", ctypes.c_size_t), ("PeakJobMemoryUsed", ctypes.c_size_t)]

    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return None
    limits = ExtendedLimits()
    limits.BasicLimitInformation.LimitFlags = 0x2000  # JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    ok = kernel32.SetInformationJobObject(job, 9,  # JobObjectExtendedLimitInformation
                                          ctypes.byref(limits), ctypes.sizeof(limits))
    if ok and kernel32.AssignProcessToJobObject(job, int(proc._handle)):
        proc.glacier_mapper_job = job  # closed when QGIS's process ends: the engine goes with it
        return job
    kernel32.CloseHandle(job)
    return None


def watch_parent(on_orphaned, platform: str | None = None, interval: float = 1.0, getppid=os.getppid):
    """POSIX systems without PR_SET_PDEATHSIG (macOS): a daemon thread that calls
    on_orphaned() once the parent is gone (the engine is re-parented to launchd or init).
    Linux uses the kernel's signal, Windows the Job object: None there."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("linux") or platform == "win32":
        return None
    parent = getppid()

    def watch():
        while getppid() == parent:
            time.sleep(interval)
        on_orphaned()

    thread = threading.Thread(target=watch, name="watch-parent", daemon=True)
    thread.start()
    return thread


def default_profile_folder(platform: str | None = None, env: dict | None = None, home: Path | None = None,
                           qgis_major: int = 3) -> Path:
    """QGIS's default profile folder, for the installer run from a shell (inside QGIS ask
    QgsApplication.qgisSettingsDirPath(), never this): %APPDATA%\\QGIS\\QGIS3 on Windows,
    ~/Library/Application Support/QGIS/QGIS3 on macOS, $XDG_DATA_HOME (~/.local/share)/QGIS/QGIS3
    on Linux; QGIS 4 keeps its profiles in QGIS4 beside them."""
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    home = Path.home() if home is None else Path(home)
    if platform == "win32":
        base = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "QGIS" / f"QGIS{qgis_major}" / "profiles" / "default"


def default_engine_folder(profile: Path, platform: str | None = None, env: dict | None = None,
                          home: Path | None = None) -> Path:
    """Where the engine's environment goes unless the user says: in the profile, except on
    Windows, where torch's deepest files under a profile folder pass the 260-character path
    limit: a short folder, %LOCALAPPDATA%\\GlacierMapper."""
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    if platform == "win32":
        home = Path.home() if home is None else Path(home)
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / "GlacierMapper"
    return Path(profile) / "python" / "glacier_mapper_engine"


def interpreter_candidates(executable: str, prefix: str, base_prefix: str, platform: str | None = None,
                           version: tuple = sys.version_info[:2]) -> list[Path]:
    """Python interpreters that can create the engine's venv, best first. Inside QGIS
    sys.executable is QGIS itself: qgis-bin.exe (OSGeo4W, standalone installer: Python in
    <root>/apps/Python3xx), QGIS.app/Contents/MacOS/QGIS (Python in the bundle), /usr/bin/qgis."""
    platform = sys.platform if platform is None else platform
    exe = Path(executable)
    major, minor = version
    out: list[Path] = []
    if platform == "win32":
        names = ["python.exe", "python3.exe"]
        folders = [Path(base_prefix), Path(prefix)]
        root = exe.parent.parent  # <root>\bin\qgis-bin.exe
        folders += [root / "apps" / f"Python{major}{minor}"]
        folders += sorted((root / "apps").glob("Python3*"), reverse=True)
    elif platform == "darwin":
        names = [f"python{major}.{minor}", "python3"]
        folders = [Path(base_prefix) / "bin", Path(prefix) / "bin"]
        for parent in exe.parents:  # the bundle around the executable
            if parent.suffix == ".app":
                contents = parent / "Contents"
                folders += [contents / "MacOS" / "bin",
                            contents / "Frameworks" / "Python.framework" / "Versions" / f"{major}.{minor}" / "bin",
                            contents / "Frameworks" / "Python.framework" / "Versions" / "Current" / "bin"]
                break
    else:
        names = [f"python{major}.{minor}", "python3"]
        folders = [Path(base_prefix) / "bin", Path(prefix) / "bin", Path(base_prefix), Path(prefix)]
    if exe.name.lower().startswith("python"):
        out.append(exe)
    for folder in folders:
        for name in names:
            path = folder / name
            if path not in out:
                out.append(path)
    return out


# PyTorch's own wheel indexes: PyPI's torch is the CUDA build on Linux but CPU-only on
# Windows; the CUDA build for Windows (and the small CPU-only build for Linux) live here.
TORCH_INDEX = {"cuda": "https://download.pytorch.org/whl/cu128", "cpu": "https://download.pytorch.org/whl/cpu"}
TORCH_CHOICES = ("default", "cuda", "cpu")


# The engine's installed size by platform and torch build (GB), for the installer to say and
# to check the disk against: measured on Linux x86_64 with PyPI's (CUDA) torch, 6.2 GB, of it
# 3.2 NVIDIA's libraries and 0.9 triton, which the CPU and Apple builds lack; Windows' CUDA
# build carries its CUDA libraries inside torch.
INSTALL_GB = {("linux", "default"): 6.2, ("linux", "cuda"): 6.2, ("linux", "cpu"): 1.8,
              ("win32", "default"): 1.8, ("win32", "cuda"): 5.0, ("win32", "cpu"): 1.8,
              ("darwin", "default"): 1.2, ("darwin", "cpu"): 1.2}


def install_size_gb(choice: str = "default", platform: str | None = None) -> float:
    platform = sys.platform if platform is None else platform
    family = "linux" if platform.startswith("linux") else platform
    return INSTALL_GB.get((family, (choice or "default").lower()), max(INSTALL_GB.values()))


def torch_source(choice: str, platform: str | None = None) -> list[str]:
    """pip arguments that bring the torch build asked for: default (PyPI's: CUDA on Linux,
    CPU on Windows, Apple GPUs on macOS), cuda (NVIDIA GPUs: Windows needs PyTorch's index)
    or cpu (Linux: PyTorch's CPU build, a fifth of the download)."""
    platform = sys.platform if platform is None else platform
    choice = (choice or "default").lower()
    if choice not in TORCH_CHOICES:
        raise ValueError(f"TORCH must be one of {', '.join(TORCH_CHOICES)}, not {choice!r}")
    if choice == "cuda" and platform == "darwin":
        raise ValueError("TORCH=cuda: Macs have no CUDA; the default torch uses Apple GPUs (DEVICE mps)")
    if (choice == "cuda" and platform == "win32") or (choice == "cpu" and platform.startswith("linux")):
        return ["--extra-index-url", TORCH_INDEX[choice]]
    return []


def windows_peak_memory_mb(psapi=None, process=-1) -> float:
    """Windows has neither /proc nor the resource module: the peak working set of this
    process (GetProcessMemoryInfo on GetCurrentProcess's pseudo-handle, -1)."""
    import ctypes
    size = ctypes.c_size_t

    class Counters(ctypes.Structure):  # PROCESS_MEMORY_COUNTERS
        _fields_ = [("cb", ctypes.c_uint32), ("PageFaultCount", ctypes.c_uint32), ("PeakWorkingSetSize", size),
                    ("WorkingSetSize", size), ("QuotaPeakPagedPoolUsage", size), ("QuotaPagedPoolUsage", size),
                    ("QuotaPeakNonPagedPoolUsage", size), ("QuotaNonPagedPoolUsage", size),
                    ("PagefileUsage", size), ("PeakPagefileUsage", size)]
    if psapi is None:
        psapi = ctypes.WinDLL("psapi", use_last_error=True)
    counters = Counters()
    counters.cb = ctypes.sizeof(counters)
    if not psapi.GetProcessMemoryInfo(ctypes.c_void_p(process), ctypes.byref(counters), counters.cb):
        return float("nan")
    return counters.PeakWorkingSetSize / 1024.0 ** 2


# The signals the engine treats as "cancel the job and clean up", each where the system has it:
# Windows has no SIGTERM of its own to send (terminate() kills at once); it asks with Ctrl-Break,
# which Python receives as SIGBREAK.
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGBREAK")
CREATE_NO_WINDOW, CREATE_NEW_PROCESS_GROUP = 0x08000000, 0x00000200


def creation_flags(platform: str | None = None) -> int:
    """Windows: no console window for the engine, and a process group of its own, which
    Ctrl-Break can be sent to."""
    platform = sys.platform if platform is None else platform
    return CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP if platform == "win32" else 0


def ask_to_stop(proc, platform: str | None = None) -> None:
    """Ask the engine to cancel its job cleanly (it removes its partial outputs): SIGTERM, or on
    Windows Ctrl-Break to its process group."""
    platform = sys.platform if platform is None else platform
    if platform == "win32":
        proc.send_signal(getattr(signal, "CTRL_BREAK_EVENT", 1))
    else:
        proc.terminate()
