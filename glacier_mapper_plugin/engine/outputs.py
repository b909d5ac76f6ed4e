"""Outputs that lose nothing: no output of a run is one of its inputs, every output location
is checked writable before any work starts (not after hours of training), and a run that
fails or is cancelled leaves behind no folder it created (files are written atomically by
core.io.atomic_output)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

SPEC = Path(__file__).resolve().parent / "parameters.json"
INPUT_TYPES = ("source", "raster", "multilayer", "file")
OUTPUT_TYPES = ("sink", "rasterDestination", "vectorDestination", "fileDestination", "folderDestination")


def _parameters(step: str) -> dict[str, dict]:
    for s in json.loads(SPEC.read_text())["steps"]:
        if s["id"] == step:
            return {p["name"]: p for p in s["parameters"]}
    return {}


def _types(step: str) -> dict[str, str]:
    return {name: p["type"] for name, p in _parameters(step).items()}


def _paths(value) -> list[Path]:
    values = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for v in values:
        if v in (None, "") or not isinstance(v, (str, os.PathLike)):
            continue
        text = str(v).split("|")[0]
        if "://" in text or text.startswith("/vsi"):
            continue
        out.append(Path(text).expanduser().resolve())
    return out


def same_file(a: Path, b: Path) -> bool:
    """One file, however named: the same path as the system compares names (Windows ignores
    case: DEM.tif is dem.tif), or two names of one existing file (macOS's case-insensitive
    disks, links, a drive letter and a UNC path to one share)."""
    if os.path.normcase(str(a)) == os.path.normcase(str(b)):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check(step: str, params: dict) -> list[Path]:
    """Refuse outputs that are inputs or cannot be written; returns the folders that do not
    exist yet (to be removed again if the run fails and leaves them empty)."""
    spec = _parameters(step)
    types = {name: p["type"] for name, p in spec.items()}
    inputs = {p: name for name, t in types.items() if t in INPUT_TYPES for p in _paths(params.get(name))}
    missing: list[Path] = []
    for name, t in types.items():
        if t not in OUTPUT_TYPES:
            continue
        for path in _paths(params.get(name)):
            extensions = spec[name].get("extensions")
            # (no extension at all: the step adds its own)
            if extensions and path.suffix and path.suffix.lower().lstrip(".") not in extensions:
                kind = KIND_OF.get(t) or spec[name].get("description", "file").lower()
                raise ValueError(f"{name}: {path.name} would hold a {kind} under another file type's name: "
                                 f"end it with .{' or .'.join(extensions)}")
            same = next((p for p in inputs if same_file(path, p)), None)
            if same is not None:
                raise ValueError(f"{name} is the same file as {inputs[same]} ({path}): an output never "
                                 "replaces an input; choose another file name")
            folder = path if t == "folderDestination" else path.parent
            if path.exists() and path.is_dir() and t != "folderDestination":
                raise ValueError(f"{name}: {path} is a folder; give a file name")
            existing = _nearest_existing(folder)
            if not existing.is_dir():
                raise ValueError(f"{name}: cannot write {path}: {existing} is a file, not a folder")
            try:
                with tempfile.NamedTemporaryFile(dir=existing, prefix=".glacier_mapper_probe_"):
                    pass
            except OSError as err:
                raise ValueError(f"{name}: cannot write to {existing}: the folder is read-only for you "
                                 f"({err.strerror.lower()}); choose a folder you can write to") from None
            if path.exists() and t != "folderDestination" and not os.access(path, os.W_OK):
                raise ValueError(f"{name}: {path} exists and is read-only: choose another file name, "
                                 "or make it writable to replace it")
            p = folder
            while not p.exists():
                missing.append(p)
                p = p.parent
    return missing


KIND_OF = {"rasterDestination": "GeoTIFF", "vectorDestination": "GeoPackage"}


def remove_created(folders: list[Path]) -> None:
    """After a failed run: the folders it created, if they are (still) empty."""
    for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


# String parameters that may hold a local path, and how to tell a path from their other values.
PATH_STRINGS = {
    "DEM": lambda v: not v.lower().startswith("stac:"),
    "ENCODER_WEIGHTS": lambda v: v.lower() not in ("none", "imagenet"),
    "DASK_SCHEDULER": lambda v: v.lower().endswith(".json"),
}


def _absolute(value, cwd: str):
    if not isinstance(value, (str, os.PathLike)) or value in ("", None):
        return value
    text, bar, rest = str(value).partition("|")  # 'file.gpkg|layername=x'
    if "://" in text or text.startswith("/vsi"):
        return value
    path = os.path.expanduser(text)
    if not os.path.isabs(path):
        path = os.path.normpath(os.path.join(cwd, path))
    return path + bar + rest


def absolute(step: str, params: dict, cwd: str) -> dict:
    """Every file parameter made absolute against `cwd`, the caller's working directory (QGIS
    resolves layer sources, not plain file and destination paths; the engine runs elsewhere)."""
    types = _types(step)
    out = dict(params)
    for name, value in params.items():
        t = types.get(name)
        if t in INPUT_TYPES + OUTPUT_TYPES or t == "multilayer":
            out[name] = [_absolute(v, cwd) for v in value] if isinstance(value, (list, tuple)) else _absolute(value, cwd)
        elif name in PATH_STRINGS and isinstance(value, str) and value.strip() and PATH_STRINGS[name](value.strip()):
            out[name] = _absolute(value.strip(), cwd)
    return out
