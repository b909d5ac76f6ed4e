#!/usr/bin/env bash
# Runs the whole suite in two tiers: the engine tier (core science, the engine process and
# command line, real data) in the engine's venv, then the QGIS tiers (algorithms through
# pytest-qgis, qgis_process, the desktop under Xvfb) in QGIS's own Python, where the engine
# runs as a separate process. Arguments go to both pytest runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
# Tests that reach PyPI (the engine's wheels for other platforms) run in CI only.
network=(-m "not network")
if [ "${CI:-}" = "true" ]; then network=(); fi
"$VENV/bin/python" -m pytest tests/test_architecture.py tests/core tests/data tests/engine tests/scripts -p no:cacheprovider "${network[@]}" "$@"
"$QGIS_VENV/bin/python" -m pytest tests/algorithms tests/headless tests/desktop -p no:cacheprovider "$@"
