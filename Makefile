# One entry point for humans and CI. `make test` is the README's test command and
# what .ci/run executes.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install controlplane lint chart-lint unit integration test demo bench bench-deps bench-curve bench-api bench-api-cost bench-scrape bench-plot clean kind-up kind-e2e kind-down chart-crds reliability \
	localstack prometheus node image e2e-deps e2e e2e-clean lock deps ecosystem-deps test-core test-e2e test-ecosystem

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Builds kube-apiserver, kube-controller-manager and etcd once (cached outside the tree).
controlplane: install
	PYTHON=$(PY) bash tests/controlplane/build.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest tests/unit -q

integration: controlplane
	$(PY) -m pytest tests/integration -q

# The README's test command. The expensive dependencies first (Go builds, the image, the LocalStack
# venv: cached outside the tree, so only a fresh machine pays), then three tiers in parallel: the
# core (unit, integration, reliability), the e2e tier on a real node, and the ecosystem tiers
# (LocalStack, Prometheus Operator). Each tier starts control planes of its own; on two cores they
# overlap well because most of their time is spent waiting for processes, not computing.
test: lint chart-lint
	$(MAKE) -j3 --no-print-directory deps
	$(MAKE) -j3 --no-print-directory --output-sync=target test-core test-e2e test-ecosystem

deps: controlplane e2e-deps ecosystem-deps

ecosystem-deps: install
	bash tests/localstack/install.sh >/dev/null
	bash tests/prometheus/build.sh >/dev/null

TIER_OPTS := -q -p no:cacheprovider --durations=15

test-core: install
	$(PY) -m pytest tests $(TIER_OPTS) --ignore=tests/e2e --ignore=tests/localstack --ignore=tests/prometheus

test-e2e: install
	$(PY) -m pytest tests/e2e $(TIER_OPTS)

test-ecosystem: install
	$(PY) -m pytest tests/localstack tests/prometheus $(TIER_OPTS)

# LocalStack community in host mode (tests/localstack/install.sh makes its Python 3.13 venv once).
localstack: controlplane
	bash tests/localstack/install.sh >/dev/null
	$(PY) -m pytest tests/localstack -q

# prometheus-operator (built once from the Go module proxy) and Debian's prometheus.
prometheus: controlplane
	bash tests/prometheus/build.sh >/dev/null
	$(PY) -m pytest tests/prometheus -q

# The e2e tier's node: Debian packages (containerd, runc, CNI plugins, buildah, debootstrap,
# dnsmasq, iptables, conntrack, ipset; installed once, needs root), kubelet, kube-proxy,
# kube-scheduler and pause built from the control plane's pinned module (cached like it), and
# kube-router for NetworkPolicy (its pinned release).
node: controlplane
	bash tests/node/install-packages.sh
	PYTHON=$(PY) bash tests/controlplane/build.sh node >/dev/null
	PYTHON=$(PY) bash tests/controlplane/build.sh netpol >/dev/null

# The operator image from the Dockerfile, without Docker: buildah on a Python base made by
# debootstrap (hack/image/build.sh); cached by its inputs. Prints the OCI archive's path.
# IMAGE=name:tag and BASE_IMAGE=an-image-in-buildah's-storage override the defaults.
image:
	bash tests/node/install-packages.sh
	REVISION="$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" bash hack/image/build.sh

# What the e2e tier needs before it starts (one time on a fresh machine; cache hits afterwards):
# the node, the image, and prometheus-operator with Prometheus (Prometheus on the node).
e2e-deps: controlplane node
	IMAGE=incident-commander:e2e bash hack/image/build.sh >/dev/null
	bash tests/prometheus/build.sh >/dev/null

# The e2e tier: a real node (kubelet + containerd) in a network namespace, the image built here,
# the chart installed with helm. Needs root. See README, "The e2e tier".
e2e: e2e-deps
	$(PY) -m pytest tests/e2e -q

# Tears down e2e nodes whose test process is gone (the tier also does it at its next start).
e2e-clean: install
	$(PY) -m tests.node.cleanup

# requirements.lock: the image's dependencies (runtime, and the build backend) at exact versions
# with hashes, resolved from pyproject.toml for Python 3.11. The Dockerfile installs from it.
# Run after changing pyproject.toml's dependencies; commit the result.
UV_VERSION := 0.13.9
lock: install
	$(PY) -m pip install --quiet 'uv==$(UV_VERSION)'
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
	  | $(VENV)/bin/uv pip compile pyproject.toml - --universal --python-version 3.11 --generate-hashes \
	      --custom-compile-command 'make lock' --quiet --output-file requirements.lock

# The fault matrix and the fuzzing, long variant (more rounds, longer faults, 300 fuzzed specs per
# kind); `make test` runs the short one. See docs/reliability.md.
reliability: controlplane
	IC_RELIABILITY=long $(PY) -m pytest tests/reliability -q -s --timeout=3600

# The packaging checks that need no cluster: the chart (helm from the control-plane bin dir),
# the Dockerfile (hadolint) and the kind scripts (shellcheck). tests/*/test_chart*.py run
# them too, together with the schema validation and the install into the control plane.
chart-lint: controlplane
	"$$(PYTHON=$(PY) bash tests/controlplane/build.sh)/helm" lint --strict charts/incident-commander
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/shellcheck -x hack/kind/*.sh hack/image/*.sh tests/node/*.sh tests/controlplane/build.sh

# crds/ is the single source; the chart carries a copy (a unit test fails when they differ).
chart-crds:
	cp crds/*.yaml charts/incident-commander/files/crds/

# kind (needs Docker, kind, kubectl and helm; not available on the project's CI machines).
kind-up:
	bash hack/kind/kind-up.sh

kind-e2e: kind-up
	bash hack/kind/kind-e2e.sh

kind-down:
	bash hack/kind/kind-down.sh

# Ports: make demo DEMO_ARGS="--aws-port 4570 --metrics-port 9091 --api-port 8444" (see --help).
demo: controlplane
	$(PY) -m tests.controlplane.demo $(DEMO_ARGS)

# Benchmarks (docs/performance.md): not part of `make test`. wrk is a Debian package (root, apt).
PLOT_VENV ?= $(HOME)/.cache/incident-commander/plot-venv
BENCH_COUNTS ?= 100 300 1000

bench-deps: controlplane
	bash bench/install-wrk.sh

# The cost curve: bench/reconcile_scale.py (operator against the same-work floor) at each N,
# raw JSON in bench/results/, log-log slopes; about 26 minutes on two cores for 100, 300, 1000.
# The committed curve also has N = 3,000 (28 minutes more): make bench-curve BENCH_COUNTS="100 300 1000 3000".
bench-curve: bench-deps
	$(PY) -m bench.curve $(BENCH_COUNTS)

# The API under wrk against its floors, and authentication costs per JWT algorithm.
bench-api: bench-deps
	$(PY) -m bench.api --json bench/results/api.json
	$(PY) -m bench.auth --algorithms | tail -1 > bench/results/jwt-algorithms.json

# docs/performance-curve.png from bench/results/curve.json. matplotlib is not a dependency of the
# project: it lives in a venv of its own, made once outside the tree.
bench-plot:
	test -x $(PLOT_VENV)/bin/python || $(PYTHON) -m venv $(PLOT_VENV)
	$(PLOT_VENV)/bin/python -c 'import matplotlib' 2>/dev/null || $(PLOT_VENV)/bin/pip install --quiet matplotlib
	$(PLOT_VENV)/bin/python bench/plot_curve.py

# One /metrics exposition at N = 1,000 and 3,000 objects of each kind (no cluster; a minute).
# Instructions per /v1/route request, ours and the floor, under cachegrind (needs valgrind):
# the API ratio that does not move with the machine's load; about a minute.
bench-api-cost: install
	$(PY) -m bench.api_cost --json bench/results/api-cost.json

bench-scrape: install
	$(PY) -m bench.scrape 1000 --json bench/results/scrape-1000.json
	$(PY) -m bench.scrape 3000 --rounds 3 --json bench/results/scrape-3000.json

bench: bench-curve bench-api bench-api-cost bench-scrape bench-plot

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
