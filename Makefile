# One entry point for humans and CI. `make test` is the README's test command and
# what .ci/run executes.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install controlplane lint chart-lint unit integration test demo bench clean kind-up kind-e2e kind-down chart-crds reliability localstack prometheus

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

test: lint chart-lint controlplane
	$(PY) -m pytest tests -q

# LocalStack community in host mode (tests/localstack/install.sh makes its Python 3.13 venv once).
localstack: controlplane
	bash tests/localstack/install.sh >/dev/null
	$(PY) -m pytest tests/localstack -q

# prometheus-operator (built once from the Go module proxy) and Debian's prometheus.
prometheus: controlplane
	bash tests/prometheus/build.sh >/dev/null
	$(PY) -m pytest tests/prometheus -q

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
	$(VENV)/bin/shellcheck -x hack/kind/*.sh

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
