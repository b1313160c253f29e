#!/usr/bin/env bash
# Vendors the charts' file:// dependencies (the library chart into each chart, the service
# charts into the umbrella), in that order, so `helm install charts/sweetslice` works offline.
# Usage: scripts/chart-deps.sh [charts-dir]   (helm from scripts/build-helm.sh unless $HELM)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CHARTS="${1:-$HERE/../charts}"
HELM="${HELM:-$("$HERE/build-helm.sh")}"
for chart in user product cart order payment notification gateway postgresql nats sweetslice sweetslice-operator; do
  # `build` follows Chart.lock; `update` rewrites it only when Chart.yaml's list has changed.
  "$HELM" dependency build --skip-refresh "$CHARTS/$chart" >/dev/null 2>&1 ||
    "$HELM" dependency update --skip-refresh "$CHARTS/$chart" >&2
done
