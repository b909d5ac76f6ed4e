#!/usr/bin/env bash
# Runs the whole suite (core, algorithms through pytest-qgis, qgis_process, real data).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
exec "$VENV/bin/python" -m pytest tests -p no:cacheprovider "$@"
