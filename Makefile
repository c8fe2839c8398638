# `make demo` and `make test` work on a fresh machine: they create .venv, install the pinned
# CPU torch first (override with TORCH_SPEC=...), then ebmlab itself.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check-layout bench bench-peers clean docs wheel-check

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ebmlab demo --out runs/demo

test: $(STAMP) check-layout docs wheel-check
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 src tests

# The site (mkdocs + material + mkdocstrings): --strict fails on broken links and references;
# nothing is fetched at build time. Output in runs/site/.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d runs/site

# The sdist and the wheel built from it install into a fresh venv and import outside the source
# tree (--no-isolation: no network; the fresh venv reads torch & co. from .venv via a .pth).
WHEEL_TMP := /tmp/ebmlab-wheel-check
wheel-check: $(STAMP)
	rm -rf $(WHEEL_TMP) && mkdir -p $(WHEEL_TMP)
	$(BIN)/python -m build --no-isolation --outdir $(WHEEL_TMP)/dist . > $(WHEEL_TMP)/build.log
	ls $(WHEEL_TMP)/dist/ebmlab-*.tar.gz $(WHEEL_TMP)/dist/ebmlab-*.whl
	$(PYTHON) -m venv $(WHEEL_TMP)/venv
	$(BIN)/python -c "import site; print(site.getsitepackages()[0])" > \
		"$$($(WHEEL_TMP)/venv/bin/python -c 'import site; print(site.getsitepackages()[0])')/deps.pth"
	$(WHEEL_TMP)/venv/bin/python -m pip install -q --no-deps --no-index $(WHEEL_TMP)/dist/ebmlab-*.whl
	cd $(WHEEL_TMP) && venv/bin/python -c "import ebmlab; assert '/venv/' in ebmlab.__file__, \
		ebmlab.__file__; print('wheel imports ebmlab', ebmlab.__version__, 'from', ebmlab.__file__)"
	cd $(WHEEL_TMP) && venv/bin/ebmlab --version
	rm -rf $(WHEEL_TMP)

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
