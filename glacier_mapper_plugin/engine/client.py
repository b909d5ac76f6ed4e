"""The QGIS side of the engine: start it, send it a job, relay what it says, stop it.

The science runs in a separate process with its own Python environment (torch's bundled
LLVM crashes QGIS when a Mesa GL driver is loaded; a second numpy breaks QGIS's modules; an
out-of-memory training must not take the user's session down), as QGIS's GRASS, SAGA and R
providers run theirs. This module imports only the standard library, so QGIS never loads
the engine's packages. Engines are kept for the session (one per concurrent run) so that a
batch over hundreds of chips pays one start and one model load, not one per chip.
"""
from __future__ import annotations

import atexit
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from . import platforms

PLUGIN_DIR = Path(__file__).resolve().parent.parent
ENV_VAR = "GLACIER_MAPPER_ENGINE"       # the engine's python (or its venv folder)
CONFIG_NAME = "glacier_mapper_engine.json"
IDLE_EXIT_S = 600                         # an idle engine ends itself after this long
STOP_GRACE_S = 8.0                        # SIGTERM, then SIGKILL after this long


class EngineError(Exception):
    """The engine refused the job or failed; the message is for the user."""


class EngineCancelled(EngineError):
    pass


class EngineMissing(EngineError):
    pass


def default_engine_dir(profile_dir: Path) -> Path:
    return platforms.default_engine_folder(profile_dir)


def venv_python(venv: Path) -> Path:
    venv = Path(venv)
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def engine_python(profile_dir: Path | None) -> Path:
    """Where the engine's interpreter is: $GLACIER_MAPPER_ENGINE, else the location the
    installer recorded in the profile, else the installer's default folder."""
    candidates = []
    if os.environ.get(ENV_VAR):
        p = Path(os.environ[ENV_VAR])
        candidates.append(venv_python(p) if p.is_dir() else p)
    if profile_dir is not None:
        config = Path(profile_dir) / "python" / CONFIG_NAME
        if config.is_file():
            try:
                candidates.append(Path(json.loads(config.read_text())["python"]))
            except (ValueError, KeyError, OSError):
                pass
        candidates.append(venv_python(default_engine_dir(profile_dir) / "venv"))
    for c in candidates:
        if c.is_file():
            return c
    raise EngineMissing("Glacier Mapper's engine (its own Python with torch and rasterio) is not installed"
                        + (f" (looked for {candidates[0]})" if candidates else "")
                        + ": run Processing Toolbox > Glacier Mapper > Set-up > Install engine "
                        "(glacier_mapper:install_engine) once, then this algorithm again.")


def _engine_env() -> dict:
    # The engine imports this very plugin (same version as the QGIS side) and nothing of
    # QGIS's Python, GDAL or PROJ.
    return platforms.engine_environment(dict(os.environ), PLUGIN_DIR.parent)


def relay(line: str, listener) -> dict | None:
    """One JSON line of the engine (or the installer): progress, info and warning go to the
    listener; the message is returned (None for a line that is not JSON, passed on as debug)."""
    try:
        msg = json.loads(line)
    except ValueError:
        listener.debug(line.rstrip())
        return None
    if "progress" in msg:
        listener.progress(float(msg["progress"]))
    if "info" in msg:
        listener.info(msg["info"])
    if "warning" in msg:
        listener.warning(msg["warning"])
    return msg


STARTING = "before it started the job"


class Engine:
    """One engine process in serve mode: jobs in on stdin, JSON lines out on stdout."""

    def __init__(self, python: Path):
        self.python = Path(python)
        kwargs = {"creationflags": platforms.creation_flags()} if os.name == "nt" else {}
        self.proc = subprocess.Popen(
            [str(self.python), "-m", "glacier_mapper_plugin.engine.runner", "serve",
             "--idle-exit", str(IDLE_EXIT_S)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # Not the plugin's folder: nothing relative may ever land there (jobs carry the
            # caller's working directory, against which the engine resolves file parameters).
            env=_engine_env(), cwd=tempfile.gettempdir(), text=True, encoding="utf-8",
            bufsize=1, **kwargs)
        platforms.tie_to_this_process(self.proc)  # Windows: the engine ends with QGIS
        self.lines: queue.Queue = queue.Queue()
        self.stderr: deque = deque(maxlen=40)  # relayed to the log as debug lines
        self.recent: deque = deque(maxlen=40)
        threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True).start()
        self._stderr_pump = threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True)
        self._stderr_pump.start()

    def _pump(self, stream, is_stdout):
        for line in stream:
            if is_stdout:
                self.lines.put(line)
            else:
                self.stderr.append(line.rstrip())
                self.recent.append(line.rstrip())  # kept for the message if the engine dies
                self.lines.put(None)  # wake the reader: it may be waiting for an exit
        if is_stdout:
            self.lines.put("")  # EOF

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Ask it to stop (SIGTERM; Ctrl-Break on Windows): the engine removes its partial
        outputs and exits; killed if it hangs."""
        if self.proc.poll() is not None:
            return
        try:
            platforms.ask_to_stop(self.proc)
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        except OSError:
            pass

    def run(self, step: str, params: dict, listener) -> dict:
        """Run one job; `listener` has progress(fraction), info(text), warning(text),
        debug(text) and cancelled() -> bool. Returns the job's results."""
        try:
            self.proc.stdin.write(json.dumps({"step": step, "params": params, "cwd": os.getcwd()}) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise EngineError(self._death_message(STARTING)) from None
        last = "starting"
        while True:
            if listener.cancelled():
                self.stop()
                raise EngineCancelled("Cancelled: the engine was stopped and its partial outputs removed.")
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                while self.stderr:
                    listener.debug(self.stderr.popleft())
                continue
            if line == "":
                self.proc.wait()
                raise EngineError(self._death_message(STARTING if last == "starting" else f"while {last}"))
            msg = relay(line, listener)
            if msg is None:
                continue
            last = msg.get("info", last)
            if "result" in msg:
                return msg["result"]
            if "error" in msg:
                if msg.get("type") == "Cancelled":
                    raise EngineCancelled(msg["error"])
                raise EngineError(msg["error"])

    def _death_message(self, when: str) -> str:
        code = self.proc.poll()
        code = self.proc.wait() if code is None else code
        self._stderr_pump.join(timeout=2)  # its last lines (the traceback) belong in the message
        tail = "\n".join(list(self.recent)[-12:])
        log = f"\nEngine log:\n{tail}" if tail else ""
        if when == STARTING:  # a broken install: one sentence that says how to repair it
            reason = next((line.strip() for line in reversed(self.recent)
                           if re.match(r"^\s*\w+(Error|Exception): ", line)), platforms.describe_exit(code))
            return (f"Glacier Mapper's engine ({self.python}) does not start ({reason}): run Processing Toolbox > "
                    f"Glacier Mapper > Set-up > Install engine (glacier_mapper:install_engine) again to repair it." + log)
        return (f"The Glacier Mapper engine stopped {when}: {platforms.describe_exit(code)}. QGIS is not "
                f"affected; no partial output was kept." + log)


class _Pool:
    """Idle engines by interpreter; a run takes one (or starts one) and gives it back."""

    def __init__(self):
        self.idle: dict[str, list[Engine]] = {}
        self.lock = threading.Lock()

    def take(self, python: Path) -> Engine:
        with self.lock:
            engines = self.idle.get(str(python), [])
            while engines:
                engine = engines.pop()
                if engine.alive():
                    return engine
        return Engine(python)

    def give_back(self, engine: Engine) -> None:
        if engine.alive():
            with self.lock:
                self.idle.setdefault(str(engine.python), []).append(engine)

    def close(self) -> None:
        with self.lock:
            engines = [e for es in self.idle.values() for e in es]
            self.idle.clear()
        for e in engines:
            try:
                e.proc.stdin.close()  # EOF: a serving engine exits
            except OSError:
                pass
        deadline = time.time() + 2
        for e in engines:
            try:
                e.proc.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                e.stop(grace=1.0)


POOL = _Pool()
atexit.register(POOL.close)


def run_step(step: str, params: dict, listener, profile_dir: Path | None = None) -> dict:
    """Run `step` in an engine and return its results (EngineError on failure)."""
    python = engine_python(profile_dir)
    engine = POOL.take(python)
    try:
        result = engine.run(step, params, listener)
    except EngineCancelled:
        engine.stop()
        raise
    except EngineError:
        if engine.alive():   # a clean refusal: the engine is still good
            POOL.give_back(engine)
        raise
    except BaseException:    # KeyboardInterrupt in qgis_process, errors of our own
        engine.stop()
        raise
    POOL.give_back(engine)
    return result


if __name__ == "__main__":  # pragma: no cover - manual check: where is the engine?
    print(engine_python(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
