"""The engine's requirements install from wheels on Windows x86_64, macOS arm64 (macOS 13) and
Linux x86_64 with Python 3.12: the record of uv's resolution for each platform
(scripts/resolve_wheels.py) belongs to today's requirements.txt and holds what each platform
needs; CI (CI=true) resolves them again over the network."""
import ast
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import resolve_wheels  # noqa: E402


def _record():
    return json.loads(resolve_wheels.RECORD.read_text())


def test_the_record_is_of_todays_requirements():
    record = _record()
    assert record["requirements_sha256"] == resolve_wheels.requirements_hash(), \
        "requirements.txt changed: run scripts/resolve_wheels.py (needs PyPI) and commit wheels.json"
    assert set(record["platforms"]) == set(resolve_wheels.PLATFORMS) and record["python"] == "3.12"


def test_each_platform_gets_what_the_engine_needs():
    pins = {p: dict(pin.split("==") for pin in v) for p, v in _record()["platforms"].items()}
    for platform, got in pins.items():
        for package in ("numpy", "torch", "rasterio", "pyogrio", "segmentation-models-pytorch", "xarray", "dask",
                        "onnxruntime", "openvino"):  # BACKEND's runtimes on every platform
            assert package in got, (platform, package)
        assert "xgboost" in got or "xgboost-cpu" in got, platform
        assert "netcdf4" in got or "h5netcdf" in got, platform
    mac, windows, linux = pins["macos-arm64 (macOS 13)"], pins["windows-x86_64"], pins["linux-x86_64"]
    assert mac["torch"] == "2.11.0" and windows["torch"] == linux["torch"] == "2.14.1"
    assert mac["onnxruntime"] == "1.23.2" and windows["onnxruntime"] == linux["onnxruntime"] == "1.31.1"
    assert "netcdf4" not in mac and "xgboost-cpu" not in mac  # no macOS 13 arm64 wheels


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")  # PEP 503


def test_every_package_the_engine_imports_is_installed_on_every_platform():
    """What core/ and engine/ import (the engine's process) resolves on each platform: a package
    present in the test venv only (requirements-dev.txt) would work here and fail for users."""
    imported: dict[str, str] = {}
    for path in [*(ROOT / "glacier_mapper_plugin" / "core").rglob("*.py"),
                 *(ROOT / "glacier_mapper_plugin" / "engine").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.split(".")[0], path.name)
    distributions = importlib.metadata.packages_distributions()
    third_party = {m: f for m, f in imported.items()
                   if m not in sys.stdlib_module_names and m != "glacier_mapper_plugin"}
    assert {"torch", "onnxruntime", "rasterio"} <= set(third_party)  # the scan sees the imports
    for platform, pins in _record()["platforms"].items():
        got = {_normal(pin.split("==")[0]) for pin in pins}
        for module, where in third_party.items():
            names = {_normal(d) for d in [module, *distributions.get(module, [])]}  # xgboost: -cpu or not
            assert names & got, f"{where} imports {module}, which {platform} does not install"
        # imported by torch's ONNX exporter and onnxruntime's quantiser when they run, not by us
        assert "onnx" in got, platform


@pytest.mark.network
def test_the_requirements_resolve_today():
    """CI: uv resolves the requirements for the three platforms from PyPI, wheels only."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "resolve_wheels.py"), "--check"],
                         capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert run.returncode == 0, run.stderr[-3000:]
