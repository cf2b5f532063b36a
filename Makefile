# fedmm: set-up, the main job, and the checks. `make simulate` and `make test` each install
# what they need into .venv first (idempotent: a second call skips the install).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fedmm-installed
NNUNET_STAMP := $(VENV)/.nnunet-installed
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export MPLCONFIGDIR ?= /tmp/fedmm-mplconfig

.PHONY: setup simulate test test-all test-fast lint typecheck nginx nnunet clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "fedmm needs Python 3.11; found " + sys.version.split()[0] + ". Run make PYTHON=python3.11 ...")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# Without a GPU, install the CPU build of torch first; otherwise resolving fedmm's
	@# dependencies would pull a multi-GB CUDA build. With a GPU, the CUDA build is wanted.
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing the CUDA build of torch"; \
		$(PY) -m pip install -q torch==2.13.0; \
	else \
		echo "No GPU: installing the CPU build of torch"; \
		$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_CPU_INDEX),--index-url $(TORCH_CPU_INDEX)); \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# nnU-Net's network code and weight loader, which the nnU-Net export's tests run. --no-deps:
# their declared dependencies pull timm and torchvision (and with them a CUDA torch) and a
# dozen more packages that neither the export nor those tests import (4.6 MB installed).
nnunet: $(NNUNET_STAMP)

$(NNUNET_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps nnunetv2==2.8.1 dynamic-network-architectures==0.4.4 \
		batchgenerators==0.25.5
	touch $(NNUNET_STAMP)

simulate: setup
	$(VENV)/bin/simulate $(ARGS)

# nginx (Debian's package) is the coordinator's reverse proxy; the deployment tests start it.
nginx:
	@bash deploy/install-nginx.sh

# What CI runs: everything but GPU tests and the few marked slow (a killed server
# resuming, a simulation resuming), which `make test-all` adds.
test: setup nnunet nginx lint typecheck
	$(PY) -m pytest -m "not gpu and not slow" $(PYTEST_ARGS)

test-all: setup nnunet nginx lint typecheck
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

test-fast: setup nnunet
	$(PY) -m pytest -m "not gpu and not slow and not integration" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
