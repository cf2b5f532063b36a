# fedmm: set-up, the main job, and the checks. `make simulate` and `make test` each install
# what they need into .venv first (idempotent: a second call skips the install).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fedmm-installed
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export MPLCONFIGDIR ?= /tmp/fedmm-mplconfig

.PHONY: setup simulate test test-all test-fast lint typecheck nginx clean gpu-check

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

simulate: setup
	$(VENV)/bin/simulate $(ARGS)

# nginx (Debian's package) is the coordinator's reverse proxy; the deployment tests start it.
nginx:
	@bash deploy/install-nginx.sh

# What CI runs: everything but GPU tests and the few marked slow (a killed server
# resuming, a simulation resuming), which `make test-all` adds.
test: setup nginx lint typecheck
	$(PY) -m pytest -m "not gpu and not slow" $(PYTEST_ARGS)

test-all: setup nginx lint typecheck
	$(PY) -m pytest -m "not gpu" $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not gpu and not slow and not integration" $(PYTEST_ARGS)

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
