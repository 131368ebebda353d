# edgefair: `make demo` and `make test` each create .venv when it is missing, install, then run.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint install system-packages clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# One resolver pass for every dependency, then `pip check` must be clean.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# Debian packages the device tests need (sshd, qemu-aarch64-static, chromium); needs root.
system-packages:
	bash scripts/ci-system-packages.sh
	bash scripts/ci-report-packages.sh

# The main job on the embedded default: train -> export matrix -> run -> audit -> report, all under
# results/ (results/results.db is every command's default database).
demo: $(STAMP)
	$(BIN)/bench sweep

# Lint (ruff), types (mypy), then the whole suite.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) system-packages lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf runs artifacts results report .pytest_cache
