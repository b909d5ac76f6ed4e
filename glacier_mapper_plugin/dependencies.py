"""Where the plugin's Python dependencies live and how they get there.

QGIS and qgis_process run the system Python, not a venv, and must keep using the numpy,
GDAL, shapely and rasterio they were built with. So torch and friends go into a
per-profile folder that the plugin puts at the front of sys.path, and the installer pins
(and afterwards removes from that folder) every package QGIS already ships: a second numpy
in the process is the most common way a QGIS deep-learning plugin breaks QGIS.

Usable without QGIS:  python3 -m glacier_mapper_plugin.dependencies install [--target DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
REQUIREMENTS = PLUGIN_DIR / "requirements.txt"

# Import name -> distribution name, for what the algorithms need at run time.
REQUIRED_MODULES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
    "safetensors": "safetensors",
    "pystac_client": "pystac-client",
    "xgboost": "xgboost-cpu",
}

# Packages QGIS (or the OS packages it is built with) already provides. They are pinned to
# the running interpreter's versions while resolving and never left in the dependency folder.
SHIPPED_WITH_QGIS = ("numpy", "scipy", "shapely", "rasterio", "pyproj", "GDAL", "matplotlib", "pillow")
ENV_VAR = "GLACIER_MAPPER_DEPS"


def python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def default_profile_dir() -> Path:
    """The QGIS profile in use, or the default profile when QGIS is not running."""
    if "qgis.core" in sys.modules:
        try:
            from qgis.core import QgsApplication  # noqa: PLC0415 (only when QGIS is loaded)
            settings = QgsApplication.qgisSettingsDirPath()
            if settings:
                return Path(settings)
        except Exception:  # pragma: no cover - QGIS without an application
            pass
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "QGIS" / "QGIS3" / "profiles" / "default"


def deps_dir(profile_dir: Path | None = None) -> Path:
    """The dependency folder: $GLACIER_MAPPER_DEPS, or <profile>/python/glacier_mapper_deps/<cpXY>."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    profile = profile_dir or default_profile_dir()
    return profile / "python" / "glacier_mapper_deps" / python_tag()


def add_to_sys_path(path: Path | None = None) -> Path:
    """Put the dependency folder first on sys.path (idempotent); returns it."""
    path = Path(path or deps_dir())
    entry = str(path)
    if path.is_dir() and entry not in sys.path:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()
    return path


def missing_modules(modules=None) -> list[str]:
    """Distribution names of the required modules that cannot be imported."""
    modules = REQUIRED_MODULES if modules is None else {m: REQUIRED_MODULES.get(m, m) for m in modules}
    return [dist for mod, dist in modules.items() if importlib.util.find_spec(mod) is None]


def install_hint(target: Path | None = None) -> str:
    target = target or deps_dir()
    return ("Install Glacier Mapper's Python dependencies with the Python that runs QGIS:\n"
            f"    {sys.executable or 'python3'} -m glacier_mapper_plugin.dependencies install "
            f"--target '{target}'\n"
            f"(run it from the folder that holds the plugin, {PLUGIN_DIR.parent}), "
            "or run `make setup` in a source checkout, then restart QGIS.")


def shipped_constraints() -> list[str]:
    """Pins for every QGIS-shipped package installed in this interpreter, plus numpy<2."""
    pins = ["numpy<2"]
    for dist in SHIPPED_WITH_QGIS:
        try:
            pins.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def _stamp(constraints: list[str]) -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes())
    digest.update("\n".join(constraints).encode())
    digest.update(python_tag().encode())
    return digest.hexdigest()


def _prune_shipped(folder: Path) -> list[str]:
    """Remove QGIS-shipped distributions that pip put in the folder anyway (--target ignores
    what is installed), so the interpreter's own builds are the ones imported."""
    removed = []
    shipped = {d.lower().replace("-", "_") for d in SHIPPED_WITH_QGIS}
    for dist in importlib.metadata.distributions(path=[str(folder)]):
        name = (dist.metadata["Name"] or "").lower().replace("-", "_")
        if name not in shipped:
            continue
        for rel in dist.files or []:
            p = folder / rel
            if p.is_file() or p.is_symlink():
                p.unlink()
        removed.append(name)
    # Remove folders emptied by the above (package dirs, .dist-info, .libs).
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    return removed


def install(target: Path | None = None, python: str | None = None, force: bool = False,
            extra_args: list[str] | None = None) -> Path:
    """Install requirements.txt into `target` atomically; a no-op when already up to date."""
    target = Path(target or deps_dir())
    constraints = shipped_constraints()
    stamp = _stamp(constraints)
    stamp_file = target / ".glacier_mapper_stamp"
    if not force and stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        print(f"dependencies up to date in {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
    try:
        cfile = staging / "constraints.txt"
        cfile.write_text("\n".join(constraints) + "\n")
        cmd = [python or sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
               "--no-warn-script-location", "--target", str(staging / "site"),
               "-r", str(REQUIREMENTS), "-c", str(cfile), *(extra_args or [])]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        site = staging / "site"
        removed = _prune_shipped(site)
        if removed:
            print("kept QGIS's own:", ", ".join(sorted(removed)))
        (site / ".glacier_mapper_stamp").write_text(stamp + "\n")
        old = None
        if target.exists():
            old = target.with_name(target.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        site.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"dependencies installed in {target}")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m glacier_mapper_plugin.dependencies",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="install the dependencies into the profile folder")
    p_install.add_argument("--target", type=Path, default=None, help="default: %s" % deps_dir())
    p_install.add_argument("--python", default=None, help="Python whose pip to use")
    p_install.add_argument("--force", action="store_true")
    sub.add_parser("path", help="print the dependency folder")
    sub.add_parser("check", help="list missing dependencies; exit 1 when any")
    args, extra = parser.parse_known_args(argv)
    if args.command == "install":
        install(args.target, args.python, args.force, extra)
    elif args.command == "path":
        print(deps_dir())
    elif args.command == "check":
        add_to_sys_path()
        missing = missing_modules()
        print("missing: " + ", ".join(missing) if missing else "all dependencies found")
        return 1 if missing else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
