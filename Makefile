# `make demo` and `make test` work on a fresh machine: they create .venv, install the pinned
# CPU torch first (override with TORCH_SPEC=...), then ebmlab itself.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check-layout bench bench-peers clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ebmlab demo --out runs/demo

test: $(STAMP) check-layout
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 src tests

# No import cycle inside src/ebmlab, no private name imported across modules (docs/architecture.md).
check-layout: $(STAMP)
	$(BIN)/python tools/check_layout.py

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# The peers side by side (benchmarks/bench_peers.py) in their own environment: the pinned torch
# first, then TorchEBM and ebmkit without their dependencies, so torch is never replaced.
PEERS := .venv-peers
bench-peers:
	test -d $(PEERS) || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q "$(TORCH_SPEC)"
	$(PEERS)/bin/pip install -q -e . && $(PEERS)/bin/pip install -q --no-deps torchebm ebmkit
	$(PEERS)/bin/pip list 2>/dev/null | grep -i "^torch "
	cd benchmarks && ../$(PEERS)/bin/python bench_peers.py

clean:
	rm -rf $(VENV) $(PEERS) runs .pytest_cache
