# Two commands on a fresh machine: `make run` and `make test`. Both create .venv as needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow lint format docs gallery bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## set up, then train configs/xor.yaml and print the result
	$(VENV)/bin/nnlab train configs/xor.yaml

test: $(STAMP)  ## set up, then run the test suite (slow experiments skipped)
	$(PY) -m pytest -q

test-slow: $(STAMP)  ## the long experiments too (full MNIST trainings)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check nnlab tests bench docs
	$(VENV)/bin/ruff format --check nnlab tests bench docs

format: $(STAMP)
	$(VENV)/bin/ruff format nnlab tests bench docs
	$(VENV)/bin/ruff check --fix nnlab tests bench docs

docs: $(STAMP)  ## regenerate the README's key reference from the schema
	$(PY) -m nnlab.docs README.md

gallery: $(STAMP)  ## rerun every question's experiment, rewrite docs/questions.md (minutes; MNIST from $$NNLAB_DATA_DIR)
	$(PY) docs/gallery.py

bench: $(STAMP)  ## run every benchmark script in bench/ (each prints its figures and ratios)
	$(PY) -m pip install --quiet -e '.[test,bench]' || echo "PyTorch could not be installed: its rows are skipped"
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
