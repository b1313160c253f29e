#!/usr/bin/env bash
# Installs checkov from PyPI into a venv of its own, cached under ~/.cache/sweetslice by version:
# it pins many packages exactly, which must not constrain the project's lock. Prints the path of
# its `checkov` command.
set -euo pipefail
VERSION="${CHECKOV_VERSION:-3.3.30}"
UV_VERSION="${UV_VERSION:-0.13.8}"
CACHE="${SWEETSLICE_CACHE:-$HOME/.cache/sweetslice}"
PYTHON="${PYTHON:-python3}"
DEST="$CACHE/checkov-$VERSION"
UV="$CACHE/uv-$UV_VERSION/bin/uv"
if [ ! -x "$DEST/bin/checkov" ] || [ ! -e "$DEST/.installed" ]; then
  rm -rf "$DEST"
  export UV_PYTHON_DOWNLOADS=never
  if [ -x "$UV" ]; then
    "$UV" venv --quiet --python "$PYTHON" "$DEST" >&2
    "$UV" pip install --quiet --python "$DEST/bin/python" "checkov==$VERSION" >&2
  else
    "$PYTHON" -m venv "$DEST" >&2
    "$DEST/bin/pip" install --quiet --disable-pip-version-check "checkov==$VERSION" >&2
  fi
  touch "$DEST/.installed"
fi
echo "$DEST/bin/checkov"
