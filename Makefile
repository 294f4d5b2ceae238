# Two commands: `make demo` runs the built-in digits study on SQLite; `make test` runs ruff, then the test suite.
# Each sets up its own virtual environment on first use.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast bench dashboard clean

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/search run --study demo

# two test processes (pytest-xdist): most tests wait on worker processes and the store, so two overlap well on 2 cores
test: $(BIN)/.installed
	$(BIN)/ruff check search training tests benchmarks
	$(BIN)/pytest -n 2

# the inner loop: every test not marked slow (no end-to-end worker processes), in under 3 minutes on 2 cores
test-fast: $(BIN)/.installed
	$(BIN)/ruff check search training tests benchmarks
	$(BIN)/pytest -n 2 -m "not slow" -q

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/throughput.py --quick

clean:
	rm -rf runs studies.db wandb .pytest_cache
