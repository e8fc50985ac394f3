# Every target sets itself up: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Two test workers: the suite is mostly single-threaded subprocesses, so it scales with cores.
TEST_WORKERS ?= 2
DATA_DIR ?= $(abspath $(if $(wildcard ../shared/data/MNIST/raw),../shared/data,data))

.PHONY: setup test lint demo bench bench-train bench-translate clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: setup
	DDIB_DATA_DIR=$(DATA_DIR) $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

lint: setup
	$(BIN)/ruff check ddib tests

demo: setup
	$(BIN)/ddib demo --out demo.png

bench: setup
	DDIB_DATA_DIR=$(DATA_DIR) $(BIN)/ddib bench all

bench-train: setup
	DDIB_DATA_DIR=$(DATA_DIR) $(BIN)/ddib bench train

bench-translate: setup
	DDIB_DATA_DIR=$(DATA_DIR) $(BIN)/ddib bench translate

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
