"""Resolves the engine's requirements to wheels for the platforms glaciologists run QGIS on,
with uv (`uv pip compile --python-platform ... --only-binary :all:`: another platform's
resolution, metadata only, no source builds) for Python 3.12:

    python scripts/resolve_wheels.py            # resolve (needs PyPI) and write the record
    python scripts/resolve_wheels.py --check    # resolve; the named packages as recorded?

The record, glacier_mapper_plugin/engine/wheels.json, says per platform which versions install
and is keyed by the requirements' hash: tests/engine/test_wheels.py checks it offline on every
run, and resolves again (the network) in CI."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "glacier_mapper_plugin" / "engine" / "requirements.txt"
RECORD = ROOT / "glacier_mapper_plugin" / "engine" / "wheels.json"
PYTHON = "3.12"
# name: (uv's --python-platform, environment: macOS's deployment target is the oldest macOS
# the wheels must install on)
PLATFORMS = {"windows-x86_64": ("x86_64-pc-windows-msvc", {}),
             "macos-arm64 (macOS 13)": ("aarch64-apple-darwin", {"MACOSX_DEPLOYMENT_TARGET": "13.0"}),
             "linux-x86_64": ("x86_64-manylinux_2_28", {})}


def requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def uv() -> str:
    exe = Path(sys.executable).parent / "uv"
    return str(exe) if exe.exists() else "uv"


def resolve() -> dict:
    pins = {}
    for name, (platform, env) in PLATFORMS.items():
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "pins.txt"
            environment = dict(os.environ, **env)
            if os.environ.get("PIP_CERT"):  # the certificates pip is told to trust, uv too
                environment.setdefault("SSL_CERT_FILE", os.environ["PIP_CERT"])
            run = subprocess.run([uv(), "pip", "compile", str(REQUIREMENTS), "--python-platform", platform,
                                  "--python-version", PYTHON, "--only-binary", ":all:", "--no-header",
                                  "--no-annotate", "--quiet", "--native-tls", "-o", str(out)],
                                 capture_output=True, text=True, env=environment, timeout=600)
            if run.returncode != 0:
                raise SystemExit(f"{name}: the requirements do not resolve to wheels:\n{run.stderr}")
            pins[name] = sorted(line.strip().lower() for line in out.read_text().splitlines()
                                if line.strip() and not line.startswith("#"))
    return {"requirements_sha256": requirements_hash(), "python": PYTHON, "platforms": pins}


def direct(record: dict) -> dict:
    """Per platform, the resolved versions of the packages requirements.txt names (the rest
    follows their dependencies and moves with new releases)."""
    named = {line.split("==")[0].strip().lower() for line in REQUIREMENTS.read_text().splitlines()
             if "==" in line and not line.lstrip().startswith("#")}
    return {p: sorted(pin for pin in pins if pin.split("==")[0] in named) for p, pins in record["platforms"].items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the record instead of writing it")
    args = ap.parse_args(argv)
    got = resolve()
    if args.check:
        record = json.loads(RECORD.read_text())
        if record["requirements_sha256"] != got["requirements_sha256"] or direct(record) != direct(got):
            print("the record differs from today's resolution: run scripts/resolve_wheels.py", file=sys.stderr)
            return 1
        print("the requirements resolve to wheels as recorded on " + ", ".join(PLATFORMS))
        return 0
    RECORD.write_text(json.dumps(got, indent=1) + "\n")
    print(f"wrote {RECORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
