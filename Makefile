# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install the project into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint clean-demo

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: torchaudio exists here only for 2.9.1 and must match it.
	$(PY) -m pip install -q torch==2.9.1 torchaudio==2.9.1
	$(PY) -m pip install -q -e '.[demo,openai-whisper,app,vad,onnx,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m recipes.demo

# One pytest-xdist worker per core; each worker, and the commands it runs, uses its share
# of the cores (tests/conftest.py), so two workers on 2 cores do not fight over them.
test: $(STAMP)
	$(PY) -m pytest -q --runslow -n auto

# The suite without the tests marked slow (the end-to-end runs: demo, web page, GPU checks' smoke run).
test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-demo:
	rm -rf data/mini_corpus results/demo
