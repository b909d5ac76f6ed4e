"""Creates or updates the engine's environment: a venv of its own with the pinned packages of
requirements.txt (numpy 2, rasterio/shapely/pyproj/pyogrio wheels with their own GDAL and
PROJ, torch, ...), so that QGIS's versions no longer constrain it and nothing is added to
QGIS's Python. Standard library only: it runs from QGIS (glacier_mapper:install_engine),
from `make setup`, or from a shell:

    python3 -m glacier_mapper_plugin.engine.install [--venv DIR] [--wheelhouse DIR]

Default location: <QGIS profile>/python/glacier_mapper_engine/venv (Windows:
%LOCALAPPDATA%\GlacierMapper\venv, short enough for torch's files); the chosen location
is recorded in <QGIS profile>/python/glacier_mapper_engine.json, where the plugin looks for it.
Remove the engine by deleting both. Re-running is fast when nothing changed (a stamp of the
requirements is written only once pip has finished); an install that was stopped half-way
is finished, or its venv made afresh, by running it again. --wheelhouse installs offline
from a folder of wheels (`pip download -r requirements.txt -d wheels` on a machine with
internet).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import platforms
from .client import CONFIG_NAME, PLUGIN_DIR, venv_python

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
STAMP = ".glacier_mapper_stamp"


def default_profile_dir() -> Path:
    return platforms.default_profile_folder()


def base_python() -> Path:
    """A real Python interpreter to create the venv with (inside QGIS, sys.executable is QGIS
    itself: see platforms.interpreter_candidates)."""
    for path in platforms.interpreter_candidates(sys.executable, sys.prefix, sys.base_prefix):
        if path.is_file():
            return path
    found = shutil.which("python3") or shutil.which("python")
    if not found:
        raise RuntimeError("no Python interpreter found to create the engine's environment: give one with --python")
    return Path(found)


def usable(python: Path) -> bool:
    """The venv's interpreter exists and starts (an install stopped while the venv was being
    made leaves a folder without one, or one that cannot start)."""
    if not Path(python).is_file():
        return False
    try:
        return subprocess.run([str(python), "-c", "import sys"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _stamp(requirements: list[Path]) -> str:
    h = hashlib.sha256(sys.version.encode())
    for r in requirements:
        h.update(r.read_bytes())
    return h.hexdigest()[:16]


def say(message: str, fraction: float | None = None, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({"info": message} if fraction is None else {"info": message, "progress": fraction}),
              flush=True)
    else:
        print(message, flush=True)


def check_disk(venv: Path, torch: str = "default") -> str:
    """Where the engine goes and how large it will be; refused before any download when the
    disk cannot hold it."""
    need = platforms.install_size_gb(torch)
    folder = Path(venv)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free / 1e9
    if free < need:
        raise RuntimeError(f"not enough disk space for the engine in {venv}: it needs about {need:g} GB (torch "
                           f"build '{torch}') and {free:.1f} GB are free there; free some space, or choose "
                           "ENGINE_FOLDER on another disk")
    return (f"installing the engine into {venv}: about {need:g} GB with the torch build '{torch}' "
            f"({free:.0f} GB free there); pip downloads the packages once")


def install(venv: Path, profile_dir: Path, wheelhouse: Path | None = None, extra: list[Path] = (),
            python: Path | None = None, as_json: bool = False, torch: str = "default") -> Path:
    """Create/update the venv, install the requirements, check the engine starts, record it."""
    venv = Path(venv).resolve()
    requirements = [REQUIREMENTS, *map(Path, extra)]
    py = venv_python(venv)
    index = platforms.torch_source(torch)
    stamp = _stamp(requirements) + (f"-{torch}" if torch != "default" else "")
    if py.is_file() and (venv / STAMP).is_file() and (venv / STAMP).read_text().strip() == stamp:
        say(f"engine environment {venv} is up to date", 0.9, as_json)
    else:
        if not usable(py):  # none yet, or a half-made one: made afresh (--clear)
            say(check_disk(venv, torch), 0.01, as_json)
            creator = Path(python) if python else base_python()
            say(f"creating the engine environment {venv} with {creator}", 0.02, as_json)
            subprocess.run([str(creator), "-m", "venv", "--clear", str(venv)], check=True)
        cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
        if wheelhouse:
            cmd += ["--no-index", "--find-links", str(wheelhouse)]
        else:
            cmd += index
        for r in requirements:
            cmd += ["-r", str(r)]
        say("installing " + ", ".join(r.name for r in requirements) + (f" from {wheelhouse}" if wheelhouse else ""),
            0.05, as_json)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        n = 0
        for line in proc.stdout:
            line = line.rstrip()
            if line and not line.startswith("WARNING: Location"):
                n += 1
                say(line, min(0.85, 0.05 + 0.005 * n), as_json)
        if proc.wait() != 0:
            raise RuntimeError(f"pip failed (exit {proc.returncode}) while installing the engine's packages; "
                               "see the lines above" + ("" if wheelhouse else
                                                        " (offline? give a WHEELHOUSE folder of wheels)"))
        (venv / STAMP).write_text(stamp)
    say("checking that the engine starts", 0.92, as_json)
    env = platforms.engine_environment(dict(os.environ), PLUGIN_DIR.parent)
    check = subprocess.run([str(py), "-m", "glacier_mapper_plugin.engine.check"], env=env,
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError("the engine's environment was installed but does not start:\n"
                           + (check.stdout + check.stderr)[-3000:])
    for line in check.stdout.strip().splitlines():  # versions, then the self-test and its device
        say(line, None, as_json)
    config = Path(profile_dir) / "python" / CONFIG_NAME
    config.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.with_name(config.name + ".tmp")
    tmp.write_text(json.dumps({"python": str(py), "venv": str(venv)}, indent=1))
    os.replace(tmp, config)
    device = next((line for line in check.stdout.splitlines() if line.startswith("self-test")), "")
    say(f"engine ready: {py} (recorded in {config}); {device}", 1.0, as_json)
    return py


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", type=Path, default=None, help="QGIS profile folder (default: the default profile)")
    ap.add_argument("--venv", type=Path, default=None, help="where the environment goes "
                    "(default: <profile>/python/glacier_mapper_engine/venv)")
    ap.add_argument("--wheelhouse", type=Path, default=None, help="install offline from this folder of wheels")
    ap.add_argument("--extra", type=Path, action="append", default=[], help="more requirements files")
    ap.add_argument("--python", type=Path, default=None, help="interpreter to create the venv with")
    ap.add_argument("--json", action="store_true", help="progress as JSON lines (for QGIS)")
    ap.add_argument("--torch", choices=platforms.TORCH_CHOICES, default="default",
                    help="torch build: default (PyPI's: CUDA on Linux, CPU on Windows, Apple GPUs on macOS), "
                    "cuda (NVIDIA GPUs on Windows too) or cpu (Linux: a fifth of the download)")
    args = ap.parse_args(argv)
    profile = args.profile or default_profile_dir()
    venv = args.venv or platforms.default_engine_folder(profile) / "venv"
    try:
        install(venv, profile, args.wheelhouse, args.extra, args.python, args.json, args.torch)
    except (RuntimeError, ValueError, subprocess.CalledProcessError, OSError) as err:
        if args.json:
            print(json.dumps({"error": str(err)}), flush=True)
        else:
            print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
