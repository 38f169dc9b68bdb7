# Two commands on a fresh machine: `make run` (install, then run the demo grid) and `make test`.
PY ?= python3
VENV ?= .venv
# CPU build by default (small, and what CI uses); GPU users: `make TORCH=torch run` or keep the torch you have.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	@$(PY) -m venv $(VENV) || { echo "error: '$(PY) -m venv' failed; on Debian: apt-get install python3-venv"; exit 2; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/gridwatch run resources/demo.toml

test: install lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check core gui tests benchmarks main.py
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/grid_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
