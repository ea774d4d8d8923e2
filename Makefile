# Every target sets itself up on a fresh machine: it creates .venv and installs the pinned stack.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: setup browser demo dev test test-e2e screenshots bench package clean

$(STAMP): pyproject.toml devtools/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' -e ./devtools
	touch $(STAMP)

setup: $(STAMP) browser

# The browser test (market_etl_tests/e2e/test_e2e_browser.py) drives Debian's chromium. Installed here when
# missing and this user may (root, as in CI); otherwise says how, and the test fails with the same hint.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser test (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "chromium missing: the browser test needs it (sudo apt-get install -y chromium)"; \
	  fi

demo: setup
	$(BIN)/market-etl demo

# After `make demo`: on the demo's mirror and lake (data/demo.env), and says so. The real archive: make dev REAL_ARCHIVE=1
dev: setup
	$(BIN)/market-etl dev $(if $(REAL_ARCHIVE),--real-archive)

# The whole suite, what CI runs. `make test-e2e`: only the end-to-end tests through a real `dagster dev` (marked slow).
test: setup
	$(BIN)/python -m pytest

test-e2e: setup
	$(BIN)/python -m pytest -m slow

# Regenerates the README's images (docs/images/*.png) from the browser test's run over a good and a bad month.
screenshots: setup
	MARKET_ETL_SCREENSHOTS=$(CURDIR)/docs/images $(BIN)/python -m pytest -p no:cacheprovider market_etl_tests/e2e/test_e2e_browser.py

# The whole pipeline on a generated 30M-trade month, stage by stage, written to benchmarks/results.md, then the
# query command's and the read API's times on a demo-sized lake as a section of the same file; then query
# planning and commit time on a trades table growing to 3,000 symbol-months (benchmarks/catalog.md).
# Other sizes or places: make bench BENCH_ARGS="--rows 3000000 --output /tmp/results.md"
bench: setup
	$(BIN)/market-etl bench pipeline $(BENCH_ARGS)
	$(BIN)/market-etl bench query
	$(BIN)/market-etl bench catalog

# Every Glue artifact into dist/glue/ (stage scripts, the Python shell 3.9 bundle, the runtime wheel for the
# Spark job); checks the Python shell wheels exist for CPython 3.9 and the bundle's 3.9 compatibility (vermin).
# terraform/ uploads exactly these: run it before `terraform apply`.
package: setup
	$(BIN)/python -m market_etl_devtools.package --dist dist

clean:
	rm -rf $(VENV) data .dagster_home dist
