#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler)
# from its Go modules, since CI machines reach module proxies, not release downloads, and caches the
# binaries under ~/.cache/sweetslice by version. Prints the folder holding them.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points every k8s.io/<staging> module at a
# folder inside its own tree. A wrapper module requires it and points each of those modules at
# the published v0.<minor>.<patch> instead, with the release's own go/godebug lines (they change
# runtime defaults the release was tested with).
set -euo pipefail
VERSION="${KUBERNETES_VERSION:-v1.34.4}"
CACHE="${SWEETSLICE_CACHE:-$HOME/.cache/sweetslice}"
DEST="$CACHE/kubernetes-$VERSION"
BINARIES="kube-apiserver kube-controller-manager kube-scheduler"

complete() {
  for binary in $BINARIES; do [ -x "$DEST/$binary" ] || return 1; done
}

if ! complete; then
  STAGING_VERSION="v0.${VERSION#v1.}"
  WORK="$DEST.build"
  rm -rf "$WORK" && mkdir -p "$WORK"
  cd "$WORK"
  UPSTREAM_MOD="$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')"
  {
    echo "module sweetslice.local/kubernetes"
    echo
    grep -E '^(go|godebug) ' "$UPSTREAM_MOD"
    echo
    echo "require k8s.io/kubernetes $VERSION"
    echo
    echo "replace ("
    sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*$#\t\1 => \1 '"$STAGING_VERSION"'#p' "$UPSTREAM_MOD"
    echo ")"
  } >go.mod
  {
    echo "//go:build tools"
    echo
    echo "// Package tools only pins the commands this module builds."
    echo "package tools"
    echo
    echo "import ("
    for binary in $BINARIES; do echo "	_ \"k8s.io/kubernetes/cmd/$binary\""; done
    echo ")"
  } >tools.go
  go mod tidy >&2
  # The same stamp the release build sets, so that clients (helm's capabilities, kwok) see the
  # real version rather than v0.0.0.
  PKG=k8s.io/component-base/version
  LDFLAGS="-s -w -X $PKG.gitVersion=$VERSION -X $PKG.gitMajor=1 -X $PKG.gitMinor=$(echo "$VERSION" | cut -d. -f2)"
  LDFLAGS="$LDFLAGS -X $PKG.gitTreeState=clean -X $PKG.buildDate=1970-01-01T00:00:00Z"
  mkdir -p bin
  for binary in $BINARIES; do
    CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o "bin/$binary" "k8s.io/kubernetes/cmd/$binary" >&2
  done
  mkdir -p "$DEST"
  for binary in $BINARIES; do mv "bin/$binary" "$DEST/$binary"; done
  cd "$CACHE" && rm -rf "$WORK"
fi
echo "$DEST"
