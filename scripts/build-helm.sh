#!/usr/bin/env bash
# Builds helm from its Go module (CI machines reach module proxies, not release downloads) and
# caches it under ~/.cache/sweetslice by helm and Kubernetes version. Prints the binary's path.
#
# A plain `go install` leaves helm's version at "v3.21" and, worse, its default Kubernetes
# version (what `helm template` and `helm lint` assume without a cluster, and what
# `.Capabilities.KubeVersion` says there) at 1.20. helm's own Makefile stamps both with -X; the
# same variables are set here, with the Kubernetes version the charts are tested against.
set -euo pipefail
VERSION="${HELM_VERSION:-v3.21.4}"
KUBE_MINOR="${HELM_KUBE_MINOR:-34}"
CACHE="${SWEETSLICE_CACHE:-$HOME/.cache/sweetslice}"
DEST="$CACHE/helm-$VERSION-k8s1.$KUBE_MINOR"
if [ ! -x "$DEST/helm" ]; then
  LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION"
  LDFLAGS="$LDFLAGS -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    LDFLAGS="$LDFLAGS -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$KUBE_MINOR"
  done
  rm -rf "$DEST/.build" && mkdir -p "$DEST/.build"
  GOBIN="$DEST/.build" CGO_ENABLED=0 go install -trimpath -ldflags "$LDFLAGS" \
    "helm.sh/helm/v3/cmd/helm@$VERSION" >&2
  mv "$DEST/.build/helm" "$DEST/helm"
  rmdir "$DEST/.build"
fi
echo "$DEST/helm"
