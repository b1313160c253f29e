#!/usr/bin/env bash
# Installs the project's tooling on a machine that has only Python 3.11+ and make:
# uv into a venv cached by version under ~/.cache/sweetslice, then the locked workspace into .venv.
set -euo pipefail
UV_VERSION="${UV_VERSION:-0.13.8}"
CACHE="${SWEETSLICE_CACHE:-$HOME/.cache/sweetslice}"
UV_HOME="$CACHE/uv-$UV_VERSION"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$UV_HOME/bin/uv" ]; then
  echo "bootstrap: installing uv $UV_VERSION into $UV_HOME"
  rm -rf "$UV_HOME"
  "$PYTHON" -m venv "$UV_HOME"
  "$UV_HOME/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# uv must not fetch its own Python builds (only package registries are reachable here).
export UV_PYTHON_DOWNLOADS=never
"$UV_HOME/bin/uv" sync --frozen --python "$PYTHON" --quiet
