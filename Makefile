# Build, test and execute the book "Balancing the Losses" and its package pinnlib.
#   make book      HTML book in _build/html (renders stored notebook outputs; executes nothing)
#   make test      lint, unit tests, nbval at the smoke budget, strict (-W) book build, browser test
#   make execute   re-run notebooks in place at the full budget (NB=book/x.ipynb for one)
#   make bench     speed comparison (installs the bench extra)
#   make study     the long-budget study (hours on a CPU; resumable; results/study)
# Run `make help` for the full list.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# --- Python environment ---------------------------------------------------------------------
# Inside an active virtualenv or conda env, use its `python`; otherwise create ./.venv.
ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
PY ?= python
VENV_PY :=
STAMP := .make/installed
else
VENV := .venv
PY ?= $(VENV)/bin/python
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
endif

# jupyter-book 1.x has no `python -m jupyter_book`; call its CLI through the same interpreter.
JB := $(PY) -c 'import sys; from jupyter_book.cli.main import main; sys.exit(main(prog_name="jupyter-book"))'

# Notebooks that the book lists (tools/toc_notebooks.py reads _toc.yml).
TOC_NOTEBOOKS = $(shell $(PY) tools/toc_notebooks.py)
# Strict book build goes to its own folder so it never mixes with `make book`'s output.
STRICT_OUT := _build/strict
# Per-cell limit for nbval at the smoke budget (a hung cell fails instead of stalling CI).
NBVAL_CELL_TIMEOUT := 600

# Targets run one at a time: the steps share one environment and a 2-core budget.
.NOTPARALLEL:

.PHONY: help setup book test unit study study-smoke nbval book-strict browser-deps browser execute bench bench-gpu lint format clean distclean

help:
	@echo "make book        build the HTML book into _build/html"
	@echo "make test        ruff, pytest tests, nbval (PINNLIB_BUDGET=smoke), book build with -W, browser"
	@echo "make browser     open every page of the strict build in headless Chromium (tests/browser)"
	@echo "make execute     execute notebooks in place at the full budget [NB=book/x.ipynb]"
	@echo "make bench       install the bench extra and run benchmarks/run.py"
	@echo "make study       the long-budget study into results/study (resumable) [JOBS=2]"
	@echo "make study-smoke the same study code at a tiny budget (part of make test)"
	@echo "make bench-gpu   the speed table on a GPU machine"
	@echo "make lint        ruff check + ruff format --check"
	@echo "make format      ruff check --fix + ruff format"
	@echo "make clean       remove build outputs and caches (keeps .venv)"
	@echo "make distclean   clean, and remove .venv"
	@echo "Python: $(PY)"

ifneq ($(VENV_PY),)
$(VENV_PY):
	python3 -m venv $(VENV)
endif

# Editable install of pinnlib with the book and test extras; redone when pyproject.toml changes.
$(STAMP): pyproject.toml | $(VENV_PY)
	$(PY) -m pip install -e ".[book,test]"
	@mkdir -p $(dir $@) && touch $@

setup: $(STAMP)
	@$(PY) --version

# --- Book -----------------------------------------------------------------------------------
book: setup
	$(JB) build . --builder html
	@echo "Open _build/html/index.html"

# Warnings are errors (-W), missing references too (-n); --keep-going reports all of them.
# A fresh folder each time: an incremental build would not re-emit old pages' warnings.
book-strict: setup
	rm -rf $(STRICT_OUT)
	$(JB) build . --builder html -W -n --keep-going --path-output $(STRICT_OUT)

# --- Tests ----------------------------------------------------------------------------------
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

unit: setup
	$(PY) -m pytest tests

# Every notebook in _toc.yml runs top to bottom at the smoke budget; only cells tagged
# nbval-check-output are compared (--nbval-lax). --nbval-current-env uses this env's kernel.
nbval: setup
	@nbs="$(TOC_NOTEBOOKS)"; \
	if [ -z "$$nbs" ]; then \
	  echo "nbval: no notebooks in _toc.yml yet, skipping"; \
	else \
	  echo "nbval: $$nbs"; \
	  PINNLIB_BUDGET=smoke $(PY) -m pytest --nbval-lax --nbval-current-env \
	    --nbval-cell-timeout=$(NBVAL_CELL_TIMEOUT) -p no:cacheprovider $$nbs; \
	fi

# --- Browser test of the built book (tests/browser) ------------------------------------------
# Debian's chromium + chromium-driver (installed with apt when missing; CI runs as root) and
# MathJax 3 from npm (the pages load it from a CDN, which CI cannot reach; the test's server
# hands the browser this copy instead). Nothing is downloaded while the test runs.
BROWSER_DEPS := _build/browser-deps
MATHJAX_VERSION := 3.2.2
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing chromium and chromium-driver"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	fi
	@if [ ! -f $(BROWSER_DEPS)/node_modules/mathjax/es5/tex-mml-chtml.js ]; then \
	  command -v npm >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y npm; }; \
	  npm install --prefix $(BROWSER_DEPS) --no-save --no-audit --no-fund --loglevel=error \
	    mathjax@$(MATHJAX_VERSION); \
	fi

# Every page of _toc.yml from the strict build (make book-strict), at 1280 and 400 px;
# screenshots in _build/screenshots.
browser: setup browser-deps
	$(PY) -m pytest tests/browser -p no:cacheprovider

# Runs in this order (.NOTPARALLEL below keeps it so even under make -j).
test: lint unit study-smoke nbval book-strict browser

# --- Notebooks at the full budget -----------------------------------------------------------
execute: setup
	PINNLIB_BUDGET=full $(PY) tools/execute_notebooks.py $(NB)

# --- The long-budget study (pinnlib/study.py, results/study/config.json) -----------------------
# Finished runs are skipped and unfinished ones resume, so `make study` can be stopped and rerun.
JOBS ?= 1
study: setup
	$(PY) -m pinnlib.study --jobs $(JOBS)
	$(PY) -m pinnlib.study --status

# The same code at a tiny budget, into a scratch folder (never into results/study).
study-smoke: setup
	rm -rf _build/study-smoke
	$(PY) -m pinnlib.study --budget smoke --out _build/study-smoke --jobs 2
	$(PY) -m pinnlib.study --budget smoke --out _build/study-smoke --status

# --- Benchmarks -----------------------------------------------------------------------------
bench: setup
	$(PY) -m pip install -e ".[bench]"
	$(PY) benchmarks/run.py

# The same table on a GPU machine (installs TensorFlow's CUDA wheels; stops if no GPU is seen).
bench-gpu: setup
	PYTHON=$(PY) bash benchmarks/gpu.sh

# --- Housekeeping ---------------------------------------------------------------------------
clean:
	rm -rf _build .make .pytest_cache .hypothesis .ruff_cache
	find . -path ./.venv -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 \
	  | xargs -0 rm -rf

distclean: clean
	rm -rf .venv *.egg-info
