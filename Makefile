# One entry point for humans and CI. `make test` is the README's test command and
# what .ci/run executes.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install controlplane lint unit integration test demo bench clean

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

test: lint controlplane
	$(PY) -m pytest tests -q

demo: controlplane
	$(PY) -m tests.controlplane.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
