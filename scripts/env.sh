# Shared environment for the Makefile's scripts: headless Qt, the default QGIS profile, the
# plugin's dependency folder, the venv.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export QGIS_PROFILE="${QGIS_PROFILE:-${XDG_DATA_HOME:-$HOME/.local/share}/QGIS/QGIS3/profiles/default}"
PYTAG="cp$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"
export GLACIER_MAPPER_DEPS="${GLACIER_MAPPER_DEPS:-$QGIS_PROFILE/python/glacier_mapper_deps/$PYTAG}"
export VENV="${VENV:-$ROOT/.venv}"
