#!/usr/bin/env bash
# Builds kwok (it keeps fake nodes Ready and plays the kubelet's part for pods, against a real API
# server) from its Go module, since CI machines reach module proxies, not release downloads, and
# caches it under ~/.cache/sweetslice by version. Prints the binary's path.
set -euo pipefail
VERSION="${KWOK_VERSION:-v0.8.0}"
CACHE="${SWEETSLICE_CACHE:-$HOME/.cache/sweetslice}"
DEST="$CACHE/kwok-$VERSION"
if [ ! -x "$DEST/kwok" ]; then
  rm -rf "$DEST/.build" && mkdir -p "$DEST/.build"
  GOBIN="$DEST/.build" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${VERSION#v}" \
    "sigs.k8s.io/kwok/cmd/kwok@$VERSION" >&2
  mv "$DEST/.build/kwok" "$DEST/kwok"
  rmdir "$DEST/.build"
fi
echo "$DEST/kwok"
