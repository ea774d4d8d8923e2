# Every target sets itself up on a fresh machine: it creates .venv and installs the pinned stack.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: setup demo dev test test-e2e bench clean

$(STAMP): pyproject.toml devtools/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' -e ./devtools
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/market-etl demo

dev: setup
	$(BIN)/market-etl init-home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The whole suite, what CI runs. `make test-e2e`: only the end-to-end tests through a real `dagster dev` (marked slow).
test: setup
	$(BIN)/python -m pytest

test-e2e: setup
	$(BIN)/python -m pytest -m slow

# The whole pipeline on a generated 30M-trade month, stage by stage, written to benchmarks/results.md, then the
# query command's and the read API's times on a demo-sized lake as a section of the same file; then query
# planning and commit time on a trades table growing to 1,000 symbol-months (benchmarks/catalog.md).
# Other sizes or places: make bench BENCH_ARGS="--rows 3000000 --output /tmp/results.md"
bench: setup
	$(BIN)/market-etl bench pipeline $(BENCH_ARGS)
	$(BIN)/market-etl bench query
	$(BIN)/market-etl bench catalog

clean:
	rm -rf $(VENV) data .dagster_home
