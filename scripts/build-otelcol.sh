#!/usr/bin/env bash
# Builds the real OpenTelemetry Collector from its Go modules with the collector builder (CI
# machines reach module proxies, not release downloads), from
# k8s/observability/otelcol/builder.yaml, and caches it under ~/.cache/sweetslice by builder version
# and manifest. Prints the binary's path.
set -euo pipefail
VERSION="${OTELCOL_BUILDER_VERSION:-v0.165.0}"
CACHE="${SWEETSLICE_CACHE:-$HOME/.cache/sweetslice}"
MANIFEST="$(cd "$(dirname "$0")/.." && pwd)/k8s/observability/otelcol/builder.yaml"
DEST="$CACHE/otelcol-$VERSION-$(sha256sum "$MANIFEST" | cut -c1-12)"
if [ ! -x "$DEST/otelcol-sweetslice" ]; then
  BUILDER="$CACHE/otelcol-builder-$VERSION/builder"
  if [ ! -x "$BUILDER" ]; then
    GOBIN="$(dirname "$BUILDER")" go install "go.opentelemetry.io/collector/cmd/builder@$VERSION" >&2
  fi
  rm -rf "$DEST.build" && mkdir -p "$DEST.build"
  # The builder writes the sources (the manifest's output_path is relative: into the build
  # folder). Its `go mod tidy` would also fetch the components' test-only modules, one of which
  # the module proxy does not serve (fileexporter's tests need otlpencodingextension v0.165.1),
  # so the module is set up here with the manifest's versions and only what the binary needs.
  (cd "$DEST.build" && "$BUILDER" --config "$MANIFEST" --skip-get-modules --skip-compilation) >&2
  MODULES=$(sed -n 's/^ *- gomod: *\([^ ]*\) \(v[^ ]*\) *$/\1@\2/p' "$MANIFEST")
  (
    cd "$DEST.build/dist"
    go mod init sweetslice.local/otelcol
    go get "go.opentelemetry.io/collector/otelcol@$VERSION" $MODULES
    GOFLAGS=-mod=mod go build -trimpath -ldflags="-s -w" -o otelcol-sweetslice .
  ) >&2
  mkdir -p "$DEST"
  mv "$DEST.build/dist/otelcol-sweetslice" "$DEST/otelcol-sweetslice"
  rm -rf "$DEST.build"
fi
echo "$DEST/otelcol-sweetslice"
