"""The engine process: runs jobs from QGIS (serve mode) and reports in JSON lines.

    python -m glacier_mapper_plugin.engine.runner serve     # jobs on stdin, one JSON per line
    python -m glacier_mapper_plugin.engine.runner run JOB.json

Each job is {"step": name, "params": {PARAMETER: value}}; stdout carries {"progress": f},
{"info": text}, {"warning": text} and finally {"result": {...}} or {"error": text, "type":
kind}. SIGTERM and SIGINT cancel the job: the exception unwinds through every
`atomic_output`, so partial files are removed, and the process exits. The engine also ends
when its parent (QGIS, qgis_process) dies, and after --idle-exit seconds without a job.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import threading
import time
import traceback

from ..core.progress import Cancelled, Progress

_OUT = sys.stdout
_WRITE = threading.Lock()


def emit(**message) -> None:
    line = json.dumps(message, default=_plain)
    with _WRITE:
        _OUT.write(line + "\n")
        _OUT.flush()


def _plain(value):
    if hasattr(value, "item"):      # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class JsonProgress(Progress):
    """Progress as JSON lines, at most ten progress lines a second."""

    def __init__(self):
        super().__init__()
        self._sent = -1.0
        self._at = 0.0

    def update(self, fraction, message=None):
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        if abs(self.fraction - self._sent) >= 0.001 and (now - self._at > 0.1 or self.fraction >= 1.0):
            emit(progress=self.fraction)
            self._sent, self._at = self.fraction, now
        if message:
            self.info(message)
        self.check()

    def info(self, message):
        emit(info=str(message))

    def warning(self, message):
        emit(warning=str(message))


_CURRENT: list[JsonProgress] = []


def _on_signal(signum, frame):
    """First signal: cancel the job where it stands (the exception unwinds through the
    atomic outputs and removes partial files); a second one: leave at once."""
    if _CURRENT and not _CURRENT[-1].cancelled:  # inside a job
        _CURRENT[-1].cancelled = True
        raise Cancelled(f"cancelled ({signal.Signals(signum).name})")
    os._exit(128 + signum)


def quiet_gdal() -> None:
    """No .aux.xml side files: GDAL would write them next to the user's inputs."""
    os.environ.setdefault("GDAL_PAM_ENABLED", "NO")


def _die_with_parent() -> None:
    """No engine outlives its parent (QGIS, qgis_process): Linux sends SIGTERM when the parent
    dies, macOS has the engine watch its parent (SIGTERM to itself then: the job is cancelled
    and its partial files removed); Windows ties the engine to QGIS with a Job object
    (client side)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    from .platforms import watch_parent
    watch_parent(lambda: os.kill(os.getpid(), signal.SIGTERM))


def peak_memory_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to this program alone;
    ru_maxrss also carries the RSS of the parent that started it (it survives exec), so a
    large QGIS would make every engine run look large."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    if sys.platform == "win32":
        from .platforms import windows_peak_memory_mb
        return windows_peak_memory_mb()
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 1024.0 ** 2  # kB on Linux, bytes on macOS


def run_step(name: str, params: dict, progress, cwd: str | None = None) -> dict:
    """A step with its outputs guarded (engine/outputs.py); for the runner and the CLI. File
    parameters are resolved against `cwd`, the caller's working directory (default: ours)."""
    from . import outputs
    from .steps import STEPS
    step = STEPS.get(name)
    if step is None:
        raise ValueError(f"unknown step {name!r} (known: {', '.join(sorted(STEPS))})")
    params = outputs.absolute(name, params, cwd or os.getcwd())
    created = outputs.check(name, params)
    try:
        return step(params, progress)
    except BaseException:
        outputs.remove_created(created)
        raise


def run_job(job: dict) -> str:
    """Run one job and report its outcome: "ok", "error" or "cancelled"."""
    progress = JsonProgress()
    _CURRENT.append(progress)
    started = time.monotonic()
    try:
        result = run_step(job.get("step"), dict(job.get("params") or {}), progress, job.get("cwd"))
        emit(info=f"engine: {time.monotonic() - started:.1f} s, peak memory {peak_memory_mb():.0f} MB")
        emit(result=result)
        return "ok"
    except Cancelled as err:
        emit(error=f"Cancelled: no output was written ({err}).", type="Cancelled")
        return "cancelled"
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as err:
        emit(error=str(err), type=type(err).__name__)
    except OSError as err:  # unreadable or unwritable files: name them, no traceback
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        emit(error=f"{err.strerror or err}{where}", type="OSError")
    except MemoryError:
        emit(error=f"out of memory after {time.monotonic() - started:.0f} s (peak "
                   f"{peak_memory_mb():.0f} MB): try smaller tiles, batches or patches", type="MemoryError")
    except ImportError as err:
        emit(error=f"the engine's environment lacks {err.name or err}: reinstall it "
                   "(glacier_mapper:install_engine)", type="ImportError")
    except Exception as err:  # a bug: say what and where, keep the engine usable
        sys.stderr.write(traceback.format_exc())
        emit(error=f"internal error in the engine: {type(err).__name__}: {err} (details in the log)",
             type="InternalError")
    finally:
        _CURRENT.pop()
    return "error"


def serve(idle_exit: float) -> int:
    emit(ready=True)
    stdin = sys.stdin
    while True:
        if hasattr(select, "select") and os.name != "nt":
            ready, _, _ = select.select([stdin], [], [], idle_exit)
            if not ready:
                return 0
        line = stdin.readline()
        if not line:
            return 0
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as err:
            emit(error=f"bad job line: {err}", type="ValueError")
            continue
        if run_job(job) == "cancelled":  # cancelled by a signal: the client is stopping us
            return 130


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="glacier_mapper_plugin.engine.runner")
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--idle-exit", type=float, default=600.0)
    r = sub.add_parser("run")
    r.add_argument("job")
    args = ap.parse_args(argv)
    quiet_gdal()
    _die_with_parent()
    from .platforms import STOP_SIGNALS
    for name in STOP_SIGNALS:  # each the system has (SIGBREAK: Windows' Ctrl-Break)
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _on_signal)
    if args.mode == "serve":
        return serve(args.idle_exit)
    with open(args.job, encoding="utf-8") as f:
        return {"ok": 0, "error": 1, "cancelled": 130}[run_job(json.load(f))]


if __name__ == "__main__":
    sys.exit(main())
