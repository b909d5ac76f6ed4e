# Shared environment for the Makefile's scripts: headless Qt, the default QGIS profile, the
# engine's venv (.venv: its own packages, the glacier-mapper command, the engine-tier tests)
# and the QGIS test venv (.qgis-venv: QGIS's Python + pytest-qgis, no engine packages).
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export QGIS_PROFILE="${QGIS_PROFILE:-${XDG_DATA_HOME:-$HOME/.local/share}/QGIS/QGIS3/profiles/default}"
export VENV="${VENV:-$ROOT/.venv}"
export QGIS_VENV="${QGIS_VENV:-$ROOT/.qgis-venv}"
