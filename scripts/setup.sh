#!/usr/bin/env bash
# One-command set-up on Debian 12 (idempotent, fast when done): system packages, the engine's
# own environment (.venv, made by the same installer a QGIS user runs, plus the test tools and
# the glacier-mapper command), the QGIS test venv, and the plugin installed and enabled in
# the QGIS profile so that a plain `qgis_process.bin list` shows glacier_mapper.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh

# QGIS, its Python, the venv module, Xvfb with Mesa's GL driver for the desktop tests.
APT_PACKAGES="qgis python3-qgis qgis-providers python3-venv python3-pip python3-rasterio
  python3-numpy xvfb xauth libgl1-mesa-dri"

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

# The engine: a venv of its own (no system packages), recorded in the QGIS profile. A .venv of
# plugin versions before 0.3 shared QGIS's packages: replace it.
if grep -qs "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then rm -rf "$VENV"; fi
/usr/bin/python3 -m glacier_mapper_plugin.engine.install --venv "$VENV" --extra requirements-dev.txt \
  --profile "$QGIS_PROFILE"
if [ ! -x "$VENV/bin/glacier-mapper" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
fi

# The QGIS test tier: QGIS's Python and its packages, plus pytest-qgis.
stamp_src="$(cat requirements-qgis-dev.txt constraints.txt | sha256sum | cut -c1-16)"
if [ ! -x "$QGIS_VENV/bin/python" ] || [ "$(cat "$QGIS_VENV/.stamp" 2>/dev/null)" != "$stamp_src" ]; then
  echo "== QGIS test venv $QGIS_VENV"
  /usr/bin/python3 -m venv --system-site-packages "$QGIS_VENV"
  "$QGIS_VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-qgis-dev.txt -c constraints.txt
  echo "$stamp_src" > "$QGIS_VENV/.stamp"
fi

# The plugin in the QGIS profile, enabled for QGIS and qgis_process. The dependency folder of
# plugin versions before 0.3 (torch inside QGIS's Python) is removed: nothing may shadow QGIS.
rm -rf "$QGIS_PROFILE/python/glacier_mapper_deps"
mkdir -p "$QGIS_PROFILE/python/plugins"
ln -sfn "$ROOT/glacier_mapper_plugin" "$QGIS_PROFILE/python/plugins/glacier_mapper_plugin"
if ! grep -qs '^glacier_mapper_plugin=true' "$QGIS_PROFILE/QGIS/QGIS3.ini"; then
  qgis_process.bin plugins enable glacier_mapper_plugin >/dev/null
fi
qgis_process.bin list 2>/dev/null | grep -q "glacier_mapper:" \
  || { echo "glacier_mapper provider not visible in qgis_process list" >&2; exit 1; }
echo "== setup done: plugin in $QGIS_PROFILE, engine $VENV/bin/python, command $VENV/bin/glacier-mapper"
