# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/test-constraints.txt

.PHONY: demo test lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per install flavour, redone when the project metadata or the pins change.
$(VENV)/.demo-installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[torch]'
	touch $@

$(VENV)/.test-installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[all,dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/paramscope inspect paramscope.examples:resnet18
	$(BIN)/paramscope inspect paramscope.examples:gpt2 --depth 1
	$(BIN)/paramscope summary paramscope.examples:gpt2 --input-size 1,128 --input-dtype long --depth 2
	$(BIN)/paramscope memory paramscope.examples:gpt2 --train --seq 1024 --batch 8 --device-memory 24GiB

test: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(VENV)/.test-installed
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -r requirements/bench.txt
	$(BIN)/python benchmarks/bench_tally.py
	$(BIN)/python benchmarks/bench_headers.py
	$(BIN)/python benchmarks/bench_gguf.py
	$(BIN)/python benchmarks/bench_torchfile.py
	$(BIN)/python benchmarks/bench_config.py
	$(BIN)/python benchmarks/bench_summary.py
	$(BIN)/python benchmarks/bench_modules.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
