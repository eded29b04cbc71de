# Two commands on a fresh machine with Python 3.11+: `make serve` and `make test`.
# Each target makes .venv and installs the pinned dependencies the first time it runs.

PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint bench fmt migrate verify clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Coffer needs Python 3.11 or newer on PATH" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

serve: $(STAMP)
	$(BIN)/coffer serve

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench tools
	$(BIN)/ruff check --fix src tests bench tools

bench: $(STAMP)
	$(BIN)/coffer bench $(BENCH_ARGS)

migrate: $(STAMP)
	$(BIN)/coffer migrate

verify: $(STAMP)
	$(BIN)/coffer verify

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
