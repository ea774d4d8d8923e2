"""The Dagster UI as a person uses it, in a real headless Chromium, after a backfill over a good and a bad month.

`dagster dev` is started as in test_e2e_dagster_dev.py (its fixture, fed by this module's mirror): one
symbol, a clean month and a month whose archive carries bad prices. The backfill goes through GraphQL
like the UI's "Materialize selected"; then the browser opens the asset graph, the partitions view of
processed/trades and its checks tab, and asserts what is on the screen: the bad partition's failed check
by name, the good partition's checks passed, the downstream partition the failed check blocked.

The browser is Debian's `chromium` (`make setup` installs it when it can: `apt-get install -y chromium`),
driven by Playwright with `executable_path` (Playwright's own browser download is not used). Without a
browser the test fails saying how to get one: it never skips. Screenshots go to MARKET_ETL_SCREENSHOTS
(`make screenshots` sets docs/images, the README's images), else to the test's temporary directory.
"""
import os
import shutil
import time
from pathlib import Path

import pytest

from market_etl.core.keys import TradePartition
from market_etl_devtools.mirror.generate import Defects, generate_mirror, generate_month
from market_etl_devtools.mirror.server import MirrorServer
from market_etl_tests.e2e.test_e2e_dagster_dev import BAD_PRICE_CHECK, dagster_dev  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

GOOD = TradePartition("BTCUSDT", "2025-08")
BAD = TradePartition("BTCUSDT", "2025-09")
TRADES_PER_DAY = 200
PAGE_TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1440, "height": 900}
GRAPH_VIEWPORT = {"width": 1700, "height": 1000}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_HINT = ("install Debian's browser: `apt-get update && apt-get install -y chromium` (as root; `make setup` "
                "does it when it can), or point MARKET_ETL_CHROMIUM at a Chromium binary")


def chromium_executable() -> str:
    configured = os.environ.get("MARKET_ETL_CHROMIUM")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"MARKET_ETL_CHROMIUM={configured} is not a file: {INSTALL_HINT}")
        return configured
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    pytest.fail(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH): {INSTALL_HINT}")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Overrides the dagster_dev fixture's mirror: one good month and one with three bad prices."""
    root = tmp_path_factory.mktemp("mirror")
    generate_mirror(root, (GOOD.symbol,), (GOOD.month,), trades_per_day=TRADES_PER_DAY, seed=11)
    generate_month(root, BAD.symbol, BAD.month, TRADES_PER_DAY, seed=11, defects=Defects(bad_values=3))
    with MirrorServer(root) as server, pytest.MonkeyPatch.context() as env:
        # dagster_dev copies os.environ: a progress line on every write, as a multi-GB archive gives every 5 s.
        env.setenv("MARKET_ETL_PROGRESS_SECONDS", "0")
        yield server


@pytest.fixture(scope="module")
def backfilled(dagster_dev):
    graphql = dagster_dev.graphql
    backfill = graphql.backfill(graphql.assets(), [GOOD.dagster_key(), BAD.dagster_key()])
    # One partition's run fails (the blocking check), so the backfill as a whole does not succeed.
    assert backfill["status"] in ("COMPLETED_FAILED", "FAILED", "COMPLETED"), backfill
    # The community sign-up dialog opens a second after the first page settles, over whatever a test clicks
    # next; what the UI's "Skip" does, once for the instance, keeps it from opening at all.
    assert graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    return dagster_dev


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    configured = os.environ.get("MARKET_ETL_SCREENSHOTS")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {directory}")
    return directory


@pytest.fixture(scope="module")
def browser():
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the Python package playwright is missing: run `make setup` (it is in the dev extras)")
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def ui(browser, backfilled):
    """A fresh page on the running UI (the instance has already seen the sign-up dialog: `backfilled`)."""
    base = backfilled.graphql.url.removesuffix("/graphql")
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()

    def goto(path: str, viewport: dict | None = None):
        page.set_viewport_size(viewport or VIEWPORT)
        page.goto(base + path)
        return page

    yield goto
    context.close()


def _open_check_partitions(page) -> None:
    """Open the Partitions tab of the check shown in the detail pane.

    The asset has a Partitions tab of its own, above; the check's tab bar (the innermost block with its
    Execution and Automation history tabs) shows one only once the check has loaded, and clicking early
    would open the asset's. Playwright's click waits until the check's own tab is there."""
    tab_bar = (page.locator("div").filter(has=page.get_by_text("Execution history", exact=True))
               .filter(has=page.get_by_text("Automation history", exact=True)).last)
    tab_bar.get_by_text("Partitions", exact=True).click()


def _pick(page, partition: TradePartition) -> None:
    """Pick a partition in a symbol x month partition picker: the month first, then the symbol."""
    page.get_by_text(f"{partition.month}-01", exact=True).first.click()
    page.get_by_text(partition.symbol, exact=True).first.click()
    page.get_by_text(partition.dagster_key(), exact=True).first.wait_for()


def _check_status(page, partition: TradePartition) -> str:
    """The status shown in a check's partition detail pane (the innermost block with the key and the execution)."""
    pane = (page.locator("div").filter(has=page.get_by_text(partition.dagster_key(), exact=True))
            .filter(has_text="Latest execution").last)
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    while True:  # the pane's heading can render before the execution it describes
        lines = [line.strip() for line in pane.inner_text().splitlines()]
        status = next((line for line in lines if line in ("Passed", "Failed", "Skipped", "Execution failed")), None)
        if status is not None:
            return status
        assert time.monotonic() < deadline, f"no check status in the pane of {partition}: {lines}"
        page.wait_for_timeout(200)


def test_asset_graph_shows_the_lake_from_archive_to_analytics(ui, screenshots):
    # Depth 2 reaches both ends; wide enough for detailed nodes (zoomed out further, the graph draws names only).
    page = ui("/assets/processed/trades?view=lineage&lineageDepth=2", GRAPH_VIEWPORT)
    for name in ("trades_zip", "trades_csv", "trades", "trades_binance", "ohlcv_1m", "daily_trade_stats"):
        page.get_by_text(name, exact=True).filter(visible=True).first.wait_for()
    # The failed checks of the bad month show on processed/trades' node: not all 6 checks passed.
    page.get_by_text("4 / 6 Passed").filter(visible=True).first.wait_for()
    page.wait_for_timeout(1000)  # the graph's zoom-to-fit animation
    page.screenshot(path=screenshots / "asset_graph.png")


def test_checks_tab_names_the_bad_partitions_failed_check_and_passes_the_good_one(ui, screenshots):
    page = ui(f"/assets/processed/trades?view=checks&checkDetail={BAD_PRICE_CHECK}")
    page.get_by_text(BAD_PRICE_CHECK, exact=True).first.wait_for()
    page.get_by_text("This is a blocking asset check.", exact=False).first.wait_for()

    # The check's partitions: one failed (the bad month), one passed (the good month).
    _open_check_partitions(page)
    page.get_by_text("Failed (1)", exact=True).wait_for()
    page.get_by_text("Passed (1)", exact=True).wait_for()
    _pick(page, BAD)
    assert _check_status(page, BAD) == "Failed"
    # The readable summary: the rule that quarantined rows, with its count and the source lines.
    page.get_by_text("[Show Markdown]").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("price_not_positive").first.wait_for()
    page.wait_for_timeout(1000)  # the dialog's fade-in
    page.screenshot(path=screenshots / "check_failed_summary.png")
    page.keyboard.press("Escape")

    page = ui(f"/assets/processed/trades?view=checks&checkDetail={BAD_PRICE_CHECK}")
    _open_check_partitions(page)
    page.get_by_text("Failed (1)", exact=True).wait_for()
    page.screenshot(path=screenshots / "check_dashboard.png")

    # Every check of the good month passed, each on its own partitions tab.
    for check in ("well_formed_rows", "valid_trade_dates", BAD_PRICE_CHECK, "positive_quantities",
                  "rows_reconciled", "trade_ids_contiguous"):
        page = ui(f"/assets/processed/trades?view=checks&checkDetail={check}")
        _open_check_partitions(page)
        _pick(page, GOOD)
        assert _check_status(page, GOOD) == "Passed", check


def test_partitions_view_shows_the_materialisation_metadata(ui, screenshots):
    page = ui(f"/assets/processed/trades?view=partitions&partition={GOOD.dagster_key().replace('|', '%7C')}")
    page.get_by_text("Materialized (2)", exact=True).wait_for()
    page.get_by_text("dagster/row_count", exact=True).first.wait_for()
    page.get_by_text("rows_per_day", exact=True).first.wait_for()
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 2200})  # the whole metadata list in one image
    page.wait_for_timeout(1000)
    page.screenshot(path=screenshots / "materialization_metadata.png")


def test_the_downstream_partition_the_failed_check_blocked_is_not_materialised(ui, screenshots):
    page = ui("/assets/market_data/trades_binance?view=partitions")
    page.get_by_text("Materialized (1)", exact=True).wait_for()
    _pick(page, BAD)
    page.get_by_text("did not materialize this asset", exact=False).first.wait_for()
    page.screenshot(path=screenshots / "blocked_downstream.png")

    _pick(page, GOOD)
    page.get_by_text("Latest materialization", exact=True).first.wait_for()
    page.get_by_text("did not materialize this asset", exact=False).first.wait_for(state="detached")


LATEST_MATERIALIZATION = """
query ($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { assetMaterializations(partitions: $partitions, limit: 1) {
      runId metadataEntries { label __typename
        ... on IntMetadataEntry { intValue }
        ... on TableSchemaMetadataEntry { schema { columns { name type } } } } } }
  }
}
"""


def _latest(graphql, path: list[str], partition: TradePartition) -> dict:
    [latest] = graphql(LATEST_MATERIALIZATION, key={"path": path},
                       partitions=[partition.dagster_key()])["assetNodeOrError"]["assetMaterializations"]
    return latest


def test_processed_trades_latest_materialisation_carries_row_count_and_column_schema(backfilled):
    latest = _latest(backfilled.graphql, ["processed", "trades"], GOOD)
    entries = {e["label"]: e for e in latest["metadataEntries"]}
    rows_in = entries["rows_in"]["intValue"]
    assert entries["dagster/row_count"]["__typename"] == "IntMetadataEntry"
    assert entries["dagster/row_count"]["intValue"] == entries["rows_written"]["intValue"] == rows_in > 0
    columns = entries["dagster/column_schema"]["schema"]["columns"]
    assert {"name": "trade_id", "type": "bigint"} in columns and {"name": "price", "type": "decimal(18,8)"} in columns
    assert entries["rows_per_day"]["__typename"] == "TableMetadataEntry"
    assert entries["quarantine"]["__typename"] == "MarkdownMetadataEntry"


def test_the_runs_log_shows_progress_of_download_and_unzip_and_the_etl_phases(backfilled):
    run_id = _latest(backfilled.graphql, ["raw", "trades_zip"], GOOD)["runId"]
    events = backfilled.graphql.run_logs(run_id)
    messages = [e.get("message") or "" for e in events]
    assert any(f"downloading {GOOD}: " in m and "MB/s" in m and "ETA" in m for m in messages), messages
    assert any(f"inflating {GOOD}: " in m and "MB/s" in m for m in messages), messages
    # Phase names differ by engine (DuckDB locally, Spark on Glue); each logs its start and every phase's end.
    assert any("etl: " in m and " started" in m for m in messages), messages
    assert sum("etl: " in m and " finished in " in m for m in messages) >= 3, messages
