# fedmm: set-up, the main job, and the checks. `make simulate` and `make test` each install
# what they need into .venv first (idempotent: a second call skips the install).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Which role's packages (pyproject.toml's extras): dev (everything: simulation, MLflow and the
# tools), or `make setup-site` (the site daemon's lean install), `make setup-server` (the coordinator's).
EXTRAS ?= dev
STAMP := $(VENV)/.fedmm-installed-$(or $(EXTRAS),site)
TORCH_VERSION := 2.13.0
# PyTorch's own index of CPU-only wheels (a mirror of it may be given instead).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
NNUNET_STAMP := $(VENV)/.nnunet-installed
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export MPLCONFIGDIR ?= /tmp/fedmm-mplconfig
# Test workers (pytest-xdist): one per core this process may use, at most 4 (the integration
# tests each start a federation); each worker takes whole files, so a module's federation is
# started once. PYTEST_WORKERS=0 runs everything in this process.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: setup setup-site setup-server simulate test test-all test-fast lint typecheck nginx nnunet clean gpu-check

setup: $(STAMP)

setup-site:
	@$(MAKE) --no-print-directory setup EXTRAS=

setup-server:
	@$(MAKE) --no-print-directory setup EXTRAS=server

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "fedmm needs Python 3.11; found " + sys.version.split()[0] + " ($(PYTHON)). Install 3.11 (e.g. `uv python install 3.11`, pyenv, or deadsnakes on Ubuntu) and run make PYTHON=python3.11 ...")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# Without a GPU, install the CPU build of torch first; otherwise resolving fedmm's
	@# dependencies would pull a multi-GB CUDA build. PyPI's Linux wheels are CUDA builds, so
	@# the CPU build comes from PyTorch's index; where that index cannot be reached (a
	@# firewall, a PyPI-only mirror), the default index is used after one short try.
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "GPU found: installing the CUDA build of torch $(TORCH_VERSION) from the default index"; \
		$(PY) -m pip install -q torch==$(TORCH_VERSION); \
	elif $(PY) -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "$(TORCH_VERSION)")' 2>/dev/null; then \
		echo "No GPU: torch $(TORCH_VERSION) is already installed in $(VENV)"; \
	else \
		echo "No GPU: installing the CPU build of torch $(TORCH_VERSION) from $(TORCH_CPU_INDEX)"; \
		$(PY) -m pip install -q --timeout 10 --retries 0 --index-url $(TORCH_CPU_INDEX) torch==$(TORCH_VERSION) \
		|| { echo "$(TORCH_CPU_INDEX) is unreachable: installing torch $(TORCH_VERSION) from the default index instead" \
		     "(on Linux x86-64 PyPI's wheel is the CUDA build, about 3 GB more; give a reachable mirror with TORCH_CPU_INDEX=URL)"; \
		     $(PY) -m pip install -q torch==$(TORCH_VERSION); }; \
	fi
	@$(PY) -W ignore -c 'import torch; c = torch.version.cuda; print(f"Installed torch {torch.__version__}: " + (f"CUDA {c} build" if c else "CPU build") + " (torch.version.cuda = " + repr(c) + ")")'
	$(PY) -m pip install -q -e ".$(if $(EXTRAS),[$(EXTRAS)])"
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
# resuming, a simulation resuming, the other strategies' whole runs), which `make test-all` adds.
test: setup nnunet nginx lint typecheck
	$(PY) -m pytest $(XDIST) -m "not gpu and not slow" $(PYTEST_ARGS)

test-all: setup nnunet nginx lint typecheck
	$(PY) -m pytest $(XDIST) -m "not gpu" $(PYTEST_ARGS)

test-fast: setup nnunet
	$(PY) -m pytest $(XDIST) -m "not gpu and not slow and not integration" $(PYTEST_ARGS)

# On a machine with a GPU (CI has none): the tests marked gpu, then the throughput
# benchmark on CUDA, which writes benchmarks/results/throughput_gpu.json with the machine.
gpu-check: setup
	@$(PY) -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "make gpu-check needs CUDA, but torch sees no GPU here. Check nvidia-smi, and that .venv holds the CUDA build of torch (make setup installs it when nvidia-smi finds a GPU).")'
	$(PY) -m pytest -m gpu -rs $(PYTEST_ARGS)
	$(PY) benchmarks/throughput.py --device cuda --out benchmarks/results/throughput_gpu.json

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
