# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint fmt clean

# torch is installed first and pinned: the CPU wheel lies on disk, and letting pip
# resolve torch through another package's open range downloads GB of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,serve,text,dev,bench]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/seater demo

lint: setup
	$(BIN)/ruff check .

# One BLAS thread: on 2 cores, OpenBLAS's default threads make small matmuls 100x
# slower whenever another process is busy (measured while building the indexer).
test: setup
	$(BIN)/ruff check .
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q

fmt: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf runs/demo .pytest_cache .ruff_cache
