#!/usr/bin/env bash
# Builds the real Toxiproxy server from its Go module (CI machines reach module proxies, not release
# downloads) and caches it by version under ~/.cache/sweetslice. Prints the binary's path.
set -euo pipefail
VERSION="${TOXIPROXY_VERSION:-v2.12.0}"
CACHE="${SWEETSLICE_CACHE:-$HOME/.cache/sweetslice}"
DEST="$CACHE/toxiproxy-$VERSION"
if [ ! -x "$DEST/toxiproxy-server" ]; then
  mkdir -p "$DEST"
  GOBIN="$DEST/.build" GOFLAGS=-mod=mod go install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION" >&2
  mv "$DEST/.build/server" "$DEST/toxiproxy-server"
  rmdir "$DEST/.build"
fi
echo "$DEST/toxiproxy-server"
