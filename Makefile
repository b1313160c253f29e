# Sweet Slice: `make up` runs the platform, `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION ?= 0.13.8
CACHE ?= $(HOME)/.cache/sweetslice
UV := $(CACHE)/uv-$(UV_VERSION)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8080
DATA_DIR ?= .run
REPLICAS ?=
DISCOVERY ?= static
LAUNCH := $(PY) -m shopkit.launcher --port $(PORT) --data-dir $(DATA_DIR) --discovery $(DISCOVERY) $(foreach r,$(REPLICAS),--replicas $(r))
PYTEST_ARGS ?=
export UV_PYTHON_DOWNLOADS := never

WORKSPACE_FILES := pyproject.toml uv.lock $(wildcard services/*/pyproject.toml) operator/pyproject.toml

.PHONY: help install up reset lint format typecheck contracts test test-unit test-e2e test-faults test-deploy chaos clean
.PHONY: bench
.PHONY: test-telemetry
.PHONY: load test-load

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: $(WORKSPACE_FILES) scripts/bootstrap.sh
	@UV_VERSION=$(UV_VERSION) SWEETSLICE_CACHE=$(CACHE) scripts/bootstrap.sh
	@touch $@

install: $(VENV)/.installed ## bootstrap uv and install the locked workspace into .venv

up: install ## run the whole platform on 127.0.0.1 (PORT=8080, DATA_DIR=.run, REPLICAS="cart=2")
	@$(LAUNCH)

reset: install ## like up, but start from an empty data directory
	@$(LAUNCH) --reset

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: install ## mypy --strict on every service, the kit and the operator
	$(VENV)/bin/mypy services/*/src operator/src

contracts: install ## import-linter layering contracts
	$(VENV)/bin/lint-imports

test-unit: install ## per-service tests and the operator's reconcile tests
	$(VENV)/bin/pytest services $(PYTEST_ARGS)
	@# Apart, and rooted at operator/: pytest names test modules by their path from the root,
	@# and a module named operator.tests.* would hide the standard library's `operator`.
	$(VENV)/bin/pytest --rootdir=operator -c pyproject.toml operator/tests $(PYTEST_ARGS)

# The FAKE Consul (tests/fakes/CONSUL.md) is tested first, then the kit's Consul client against
# it, then the platform three times: SQLite, PostgreSQL, and SQLite with Consul discovery.
test-e2e: install ## cross-service tests on the real processes: SQLite, PostgreSQL, Consul discovery
	$(VENV)/bin/pytest tests/fakes tests/discovery tests/e2e $(PYTEST_ARGS)

test-faults: install ## faults injected into the running platform (Toxiproxy, kill -9, SIGSTOP)
	$(VENV)/bin/pytest tests/faults $(PYTEST_ARGS)

# promtool and prometheus come from the Debian package `prometheus` (.ci/run installs it).
PROMTOOL ?= promtool
PROM_RULES := charts/sweetslice/files/prometheus
test-telemetry: install ## Prometheus rules (promtool) and dashboards/traces against the real servers
	@command -v $(PROMTOOL) >/dev/null || { echo "promtool not found: install the Debian package 'prometheus' (apt-get install prometheus; .ci/run does it)" >&2; exit 1; }
	$(PROMTOOL) check rules $(PROM_RULES)/rules.yaml
	$(PROMTOOL) test rules $(PROM_RULES)/rules.test.yaml
	$(VENV)/bin/pytest tests/telemetry $(PYTEST_ARGS)

test-load: install ## the locust journeys against the real processes, and an SLO that fails a run
	$(VENV)/bin/pytest tests/load $(PYTEST_ARGS)

# The chart tests run a real control plane (kube-apiserver, controller-manager, scheduler, etcd)
# with kwok's fake nodes, helm and checkov. The scripts build each tool once from its Go module or
# PyPI (the Kubernetes build takes 15-25 minutes cold on 2 cores, longer than one test may run)
# and then only print the cached path, which the tests take from these variables.
test-deploy: install ## images (hadolint, build steps); the charts on a real API server with kwok nodes
	@SWEETSLICE_KUBE_BIN=$$(scripts/build-k8s.sh) && SWEETSLICE_HELM=$$(scripts/build-helm.sh) && \
	SWEETSLICE_KWOK=$$(scripts/build-kwok.sh) && SWEETSLICE_CHECKOV=$$(scripts/install-checkov.sh) && \
	export SWEETSLICE_KUBE_BIN SWEETSLICE_HELM SWEETSLICE_KWOK SWEETSLICE_CHECKOV && \
	$(VENV)/bin/pytest tests/deploy $(PYTEST_ARGS)

test: lint typecheck contracts test-unit test-e2e test-faults test-load test-telemetry test-deploy ## everything CI runs

CHAOS_FIGURES := docs/reliability-figures.json
chaos: install ## every fault at RELIABILITY.md's full size; figures into docs/reliability.md
	@rm -f $(CHAOS_FIGURES)
	@SWEETSLICE_FAULT_SCALE=full SWEETSLICE_FAULT_FIGURES=$(CURDIR)/$(CHAOS_FIGURES) \
		$(VENV)/bin/pytest tests/faults -o timeout=3600 $(PYTEST_ARGS); status=$$?; \
		if [ -f $(CHAOS_FIGURES) ]; then \
			$(PY) scripts/reliability_report.py $(CHAOS_FIGURES) docs/reliability.md; fi; \
		exit $$status

# `make load` drives a running `make up` (see README, Load testing); reports land in LOAD_DIR.
LOAD_HOST ?= http://127.0.0.1:$(PORT)
USERS ?= 20
SPAWN_RATE ?= 5
DURATION ?= 1m
SHAPE ?= constant
LOAD_DIR ?= $(DATA_DIR)/load
LOAD_ARGS ?=
load: install ## locust journeys against `make up` (USERS, SPAWN_RATE, DURATION, SHAPE); report in DATA_DIR/load
	@out=$(LOAD_DIR)/$$(date -u +%Y%m%dT%H%M%SZ); mkdir -p $$out; \
	$(VENV)/bin/locust -f tests/load/locustfile.py --headless --host $(LOAD_HOST) \
		--users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(DURATION) --shape $(SHAPE) \
		--csv $$out/stats --html $$out/report.html $(LOAD_ARGS); status=$$?; \
	echo "report: $$out/report.html (CSV: $$out/stats_*.csv)"; exit $$status

# `make bench` starts its own platforms (never `make up`'s); BENCH_QUICK=1 runs a few seconds
# per arm to check the tooling, BENCH_ONLY=P1,P5 picks goals. Writes docs/benchmarks.md.
BENCH_QUICK ?=
BENCH_ONLY ?=
bench: install ## PERFORMANCE.md's P1-P6 side by side into docs/benchmarks.md (BENCH_QUICK=1)
	@$(PY) scripts/bench/bench.py $(if $(BENCH_QUICK),--quick) $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

clean: ## remove the venv, caches and local data
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(DATA_DIR)

# Kubernetes. The charts' file:// dependencies are vendored by scripts/chart-deps.sh with a helm
# the scripts build (cached); kind-up/deploy/kind-down need docker, kind, helm and skaffold.
KIND_CLUSTER ?= sweetslice
.PHONY: charts kind-up deploy kind-down
charts: install ## regenerate the per-service charts and vendor the charts' dependencies
	$(PY) scripts/charts.py
	HELM="$${HELM:-$$(command -v helm || scripts/build-helm.sh)}" scripts/chart-deps.sh

kind-up: ## create the local kind cluster (k8s/kind-cluster.yaml) and the namespaces
	kind create cluster --name $(KIND_CLUSTER) --config k8s/kind-cluster.yaml
	kubectl --context kind-$(KIND_CLUSTER) apply -f k8s/namespace.yaml

SKAFFOLD_BUILD := $(DATA_DIR)/skaffold-build.json
deploy: ## build the images, load them into kind, install everything, smoke-test, forward the gateway
	@command -v helm >/dev/null || { echo "helm not found (see README: Kubernetes)" >&2; exit 1; }
	HELM=helm scripts/chart-deps.sh
	kubectl --context kind-$(KIND_CLUSTER) apply -f k8s/namespace.yaml
	@mkdir -p $(DATA_DIR)
	skaffold build --kube-context kind-$(KIND_CLUSTER) --file-output $(SKAFFOLD_BUILD)
	skaffold deploy --kube-context kind-$(KIND_CLUSTER) --build-artifacts $(SKAFFOLD_BUILD) --load-images=true
	skaffold verify --kube-context kind-$(KIND_CLUSTER) --build-artifacts $(SKAFFOLD_BUILD)
	@echo "the shop: http://127.0.0.1:8080 (Ctrl-C stops the port-forward; the ingress stays on 127.0.0.1:8081)"
	kubectl --context kind-$(KIND_CLUSTER) -n sweetslice port-forward service/shop-gateway 8080:8080 --address 127.0.0.1

kind-down: ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)

# After `skaffold run -p consul`: the UI Service of HashiCorp's chart (release `consul`,
# global.name consul in k8s/addons/consul.yaml) answers on port 80 in front of the server's 8500.
.PHONY: consul-ui
consul-ui: ## forward the Consul UI to http://127.0.0.1:8500 (after `skaffold run -p consul`)
	kubectl --context kind-$(KIND_CLUSTER) -n consul port-forward service/consul-ui 8500:80 --address 127.0.0.1

# Rollouts (README, Rollouts), once the shop runs on kind: builds the order service from this
# checkout as sweetslice-order:next, installs the ServiceRollout CRD and the operator when their
# releases are missing (`helm upgrade` updates them), then applies the sample canary. The
# operator's NetworkPolicy gets the cluster's own API server addresses, and a ServiceMonitor
# when the Prometheus Operator is there (`skaffold run -p observability`).
ROLLOUT_NAMESPACE ?= sweetslice
ROLLOUT_SAMPLE ?= k8s/samples/order-rollout.yaml
OPERATOR_IMAGE ?= sweetslice-operator:0.1.0
.PHONY: rollout
rollout: ## the rollout operator on kind (CRD and chart, when missing) and a canary (ROLLOUT_SAMPLE)
	@command -v helm >/dev/null || { echo "helm not found (see README: Kubernetes)" >&2; exit 1; }
	@set -euo pipefail; ctx=kind-$(KIND_CLUSTER); ns=$(ROLLOUT_NAMESPACE); \
	docker build -f services/order/Dockerfile -t sweetslice-order:next .; \
	kind load docker-image sweetslice-order:next --name $(KIND_CLUSTER); \
	if ! helm status sweetslice-crds --kube-context $$ctx -n $$ns >/dev/null 2>&1; then \
		helm install sweetslice-crds charts/sweetslice-crds --kube-context $$ctx -n $$ns; fi; \
	if ! helm status sweetslice-operator --kube-context $$ctx -n $$ns >/dev/null 2>&1; then \
		docker build -f operator/Dockerfile -t $(OPERATOR_IMAGE) .; \
		kind load docker-image $(OPERATOR_IMAGE) --name $(KIND_CLUSTER); \
		helm dependency build --skip-refresh charts/sweetslice-operator >/dev/null; \
		api=$$(kubectl --context $$ctx get endpointslices -n default \
			-l kubernetes.io/service-name=kubernetes -o jsonpath='{.items[0].endpoints[0].addresses[0]}'); \
		svc=$$(kubectl --context $$ctx get service kubernetes -n default -o jsonpath='{.spec.clusterIP}'); \
		monitoring=false; \
		kubectl --context $$ctx get crd servicemonitors.monitoring.coreos.com >/dev/null 2>&1 && monitoring=true; \
		helm install sweetslice-operator charts/sweetslice-operator --kube-context $$ctx -n $$ns \
			--set image.repository=$(firstword $(subst :, ,$(OPERATOR_IMAGE))) \
			--set image.tag=$(lastword $(subst :, ,$(OPERATOR_IMAGE))) \
			--set "networkPolicy.apiServer.cidrs={$$api/32,$$svc/32}" \
			--set monitoring.enabled=$$monitoring --set monitoring.labels.release=kube-prometheus-stack \
			--wait --timeout 3m; \
	fi; \
	kubectl --context $$ctx apply -f $(ROLLOUT_SAMPLE); \
	echo "follow it: kubectl --context $$ctx get servicerollouts -n $$ns -w"
