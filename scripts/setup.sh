#!/usr/bin/env bash
# One-command set-up on Debian 12 (idempotent, fast when done): system packages, the test
# venv, the plugin's dependency folder in the QGIS profile, and the plugin itself installed
# and enabled in that profile so that a plain `qgis_process.bin list` shows glacier_mapper.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh

APT_PACKAGES="qgis python3-qgis qgis-providers python3-venv python3-pip python3-gdal
  python3-rasterio python3-shapely python3-scipy python3-pyproj python3-matplotlib xvfb xauth"

missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "== apt-get install$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# The venv: test tools only, on top of the system Python that QGIS uses.
stamp_src="$(cat requirements-dev.txt constraints.txt | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp_src" ]; then
  echo "== venv $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
  echo "$stamp_src" > "$VENV/.stamp"
fi

# The plugin's run-time dependencies, where QGIS itself will find them (same installer a user runs).
"$VENV/bin/python" -m glacier_mapper_plugin.dependencies install --target "$GLACIER_MAPPER_DEPS"
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$GLACIER_MAPPER_DEPS" > "$site/glacier_mapper_deps.pth"

# The plugin in the QGIS profile, enabled for QGIS and qgis_process.
mkdir -p "$QGIS_PROFILE/python/plugins"
ln -sfn "$ROOT/glacier_mapper_plugin" "$QGIS_PROFILE/python/plugins/glacier_mapper_plugin"
if ! grep -qs '^glacier_mapper_plugin=true' "$QGIS_PROFILE/QGIS/QGIS3.ini"; then
  qgis_process.bin plugins enable glacier_mapper_plugin >/dev/null
fi
qgis_process.bin list 2>/dev/null | grep -q "glacier_mapper:" \
  || { echo "glacier_mapper provider not visible in qgis_process list" >&2; exit 1; }
echo "== setup done: plugin in $QGIS_PROFILE, dependencies in $GLACIER_MAPPER_DEPS"
