# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest-xdist workers; each test file runs whole on one worker (its module fixtures are built once).
# 2 cuts the suite's time on a 2-core CI machine (pytest 12-14 min against 21); TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: demo test test-fast lint benchmarks default-emulators clean venv redis-server

venv: $(STAMP)

# torch: the CPU build lies on disk on these machines; a bare requirement would pull the multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/python -m pip install -q "torch>=2.2,<3"; \
	else \
	  $(BIN)/python -m pip install -q "torch==2.13.0" || $(BIN)/python -m pip install -q "torch>=2.2,<3"; \
	fi
	$(BIN)/python -m pip install -q -e ".[dev,mpi]"
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

test: $(STAMP) redis-server
	$(BIN)/ruff check .
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PYTEST) -q

# The redis sampler's test needs Debian's redis-server: installed when missing and we are root (CI), else the
# test skips and says so.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q redis-server >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1; }; } ; } || \
	  echo "note: redis-server is not installed; tests/test_cluster_samplers.py's redis test will skip"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(PYTEST) -q -m "not slow and not mpi"

benchmarks: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/simulate.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/emulator_speed.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/emulator_accuracy.py

# Rebuild surrogate_abc/resources/*.safetensors from scratch (hours on 2 cores; minutes with many MPI ranks + a GPU).
default-emulators: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/train_default_emulators.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo-output
