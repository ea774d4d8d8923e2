"""Backfills as users run them: the real `dagster dev` (webserver + daemon), driven through the UI's GraphQL API.

The test enumerates the code location's assets and checks through GraphQL, so it covers the whole
graph as assets are added. Partitions: 2 symbols x 2 clean months (one archive answers 503 twice:
the download retries within the run), plus one month whose file carries bad prices for the second
backfill (failed blocking check, blocked downstream partition).
"""
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from market_etl.core.keys import TradePartition
from market_etl.instance import SHIPPED_DAGSTER_YAML
from market_etl_devtools.mirror.generate import Defects, generate_mirror, generate_month
from market_etl_devtools.mirror.server import MirrorServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MONTHS = ("2025-07", "2025-08")
CLEAN = [TradePartition(s, m).dagster_key() for s in SYMBOLS for m in MONTHS]
BAD = TradePartition("BTCUSDT", "2025-09")
FLAKY = TradePartition("ETHUSDT", "2025-08")
TRADES_PER_DAY = 200
PROCESSED = ("processed", "trades")
BAD_PRICE_CHECK = "positive_prices"
STARTUP_SECONDS = 180
# A ceiling: the 4-partition backfill took 329 s at load average ~10 on 2 cores (its 4 Spark stages run one at a time).
BACKFILL_SECONDS = 900
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

ASSETS_QUERY = """
{ assetNodes { assetKey { path } isMaterializable isPartitioned pools
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""
LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
BACKFILL_STATUS = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status
      error { message }
      assetBackfillData { assetBackfillStatuses {
        ... on AssetPartitionsStatusCounts { assetKey { path } numPartitionsTargeted numPartitionsInProgress
                                              numPartitionsMaterialized numPartitionsFailed }
        ... on UnpartitionedAssetStatus { assetKey { path } inProgress materialized failed }
      } }
    }
    ... on Error { message }
  }
}
"""
MATERIALIZATIONS = """
query ($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode { assetMaterializations(partitions: $partitions) {
      partition runId metadataEntries { label ... on IntMetadataEntry { intValue } } } }
  }
}
"""
BACKFILL_RUNS = """
query ($backfillId: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $backfillId}]}) {
    ... on Runs { results { runId status stepStats { stepKey startTime endTime } } }
  }
}
"""
RUN_LOGS = """
query ($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection { cursor hasMore events { ... on MessageEvent { message timestamp stepKey } } }
    ... on Error { message }
  }
}
"""
POOL_LIMIT = """
query ($pool: String!) {
  instance { poolConfig { poolGranularity defaultPoolLimit } concurrencyLimit(concurrencyKey: $pool) { slotCount } }
}
"""
CHECK_EXECUTIONS = """
query ($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 100) {
    runId status partition evaluation { success severity }
  }
}
"""


@dataclass(frozen=True)
class Asset:
    path: tuple[str, ...]
    partitioned: bool
    checks: tuple[tuple[str, bool], ...]  # (name, blocking)
    pools: tuple[str, ...]

    @property
    def key(self) -> dict:
        return {"path": list(self.path)}


class GraphQL:
    def __init__(self, url: str):
        self.url = url

    def __call__(self, query: str, **variables) -> dict:
        resp = requests.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        resp.raise_for_status()
        body = resp.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def assets(self) -> list[Asset]:
        nodes = self(ASSETS_QUERY)["assetNodes"]
        return [
            Asset(tuple(n["assetKey"]["path"]), n["isPartitioned"],
                  tuple((c["name"], c["blocking"]) for c in n["assetChecksOrError"].get("checks", [])),
                  tuple(n["pools"]))
            for n in nodes if n["isMaterializable"]
        ]

    def backfill(self, assets: list[Asset], partitions: list[str]) -> dict:
        """Launch like the UI's "Materialize selected" over partitions, then wait until the backfill finishes."""
        launched = self(LAUNCH_BACKFILL, backfillParams={
            "assetSelection": [a.key for a in assets], "partitionNames": partitions,
            "title": "e2e", "tags": [{"key": "market_etl/test", "value": "e2e"}],
        })["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + BACKFILL_SECONDS
        while time.monotonic() < deadline:
            backfill = self(BACKFILL_STATUS, id=launched["backfillId"])["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            if backfill["status"] in FINISHED:
                print(f"backfill of {len(assets)} assets x {len(partitions)} partitions: {backfill['status']} "
                      f"in {BACKFILL_SECONDS - (deadline - time.monotonic()):.0f}s")
                return backfill
            time.sleep(3)
        raise AssertionError(f"backfill not finished after {BACKFILL_SECONDS}s: {backfill}")

    def step_intervals(self, backfill_id: str) -> dict[str, list[tuple[float, float]]]:
        """step key -> (start, end) of every step of the backfill's runs."""
        runs = self(BACKFILL_RUNS, backfillId=backfill_id)["runsOrError"]["results"]
        intervals: dict[str, list[tuple[float, float]]] = {}
        for run in runs:
            for step in run["stepStats"]:
                if step["startTime"] and step["endTime"]:
                    intervals.setdefault(step["stepKey"], []).append((step["startTime"], step["endTime"]))
        return intervals

    def host_slot_intervals(self, backfill_id: str) -> dict[str, list[tuple[float, float]]]:
        """step key -> (taken, released) of every host pool slot its stages held, across the backfill's runs.

        A step's own start and end are not the measure: a step the instance let start anyway (the SQLite slot
        claim can hand one slot to two processes) waits for the host slot before its stage starts."""
        runs = self(BACKFILL_RUNS, backfillId=backfill_id)["runsOrError"]["results"]
        intervals: dict[str, list[tuple[float, float]]] = {}
        for run in runs:
            taken: dict[str, float] = {}
            for event in self.run_logs(run["runId"]):
                message, step, at = event.get("message") or "", event.get("stepKey"), event.get("timestamp")
                if not message.startswith("pool ") or step is None:
                    continue
                if " taken" in message:
                    taken[step] = float(at) / 1000
                elif message.endswith(" released"):
                    intervals.setdefault(step, []).append((taken.pop(step), float(at) / 1000))
            assert not taken, f"host slots taken and never released in run {run['runId']}: {taken}"
        return intervals

    def run_logs(self, run_id: str) -> list[dict]:
        events, cursor = [], None
        while True:
            page = self(RUN_LOGS, runId=run_id, cursor=cursor)["logsForRun"]
            assert page["__typename"] == "EventConnection", page
            events += page["events"]
            if not page["hasMore"]:
                return events
            cursor = page["cursor"]

    def pool_limit(self, pool: str) -> int:
        """The limit the running instance enforces: the pool's own, else dagster.yaml's default_limit."""
        instance = self(POOL_LIMIT, pool=pool)["instance"]
        assert instance["poolConfig"]["poolGranularity"] == "op", instance
        own = instance["concurrencyLimit"]["slotCount"]
        return own if own else instance["poolConfig"]["defaultPoolLimit"]

    def materializations(self, asset: Asset, partitions: list[str] | None) -> list[dict]:
        return self(MATERIALIZATIONS, key=asset.key, partitions=partitions)["assetNodeOrError"]["assetMaterializations"]

    def check_results(self, asset: Asset, partitions: list[str] | None) -> dict[tuple[str, str | None], dict]:
        """(check, partition) -> the check's execution in the run of that partition's latest materialisation.

        Matched by run id, which works whether or not a check spec is partition-aware.
        """
        latest_run = {m["partition"]: m["runId"] for m in reversed(self.materializations(asset, partitions))}
        results = {}
        for check, _blocking in asset.checks:
            executions = self(CHECK_EXECUTIONS, key=asset.key, check=check)["assetCheckExecutions"]
            by_run = {e["runId"]: e for e in reversed(executions)}
            for partition, run_id in latest_run.items():
                if run_id in by_run:
                    results[(check, partition)] = by_run[run_id]
        return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    generate_mirror(root, SYMBOLS, MONTHS, trades_per_day=TRADES_PER_DAY, seed=11)
    generate_month(root, BAD.symbol, BAD.month, TRADES_PER_DAY, seed=11, defects=Defects(bad_values=3))
    with MirrorServer(root) as server:
        yield server


@dataclass
class DagsterDev:
    graphql: GraphQL
    lake: Path
    log: Path


def _wait_for_graphql(graphql: GraphQL, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dagster dev exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if graphql("{ version }")["version"]:
                # The webserver answers before the code location has loaded: wait for the assets too.
                if graphql.assets():
                    return
        except (requests.RequestException, AssertionError, KeyError):
            pass
        time.sleep(2)
    raise AssertionError(f"dagster dev not serving after {STARTUP_SECONDS}s:\n{log.read_text()[-4000:]}")


def _sigint_by_default() -> None:
    """In the child, before exec. `dagster dev` maps SIGTERM to its SIGINT handler, and a process started
    from a shell's background job (CI runners, `nohup make test &`) inherits SIGINT ignored: it would
    then ignore SIGTERM too and never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(proc: subprocess.Popen) -> float:
    """SIGTERM the whole process group (webserver, daemon, code server, run workers); seconds to exit."""
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=120)  # webserver, daemon, code server and run workers all wind down on 2 busy cores
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise AssertionError("dagster dev did not stop within 120 s of SIGTERM")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def dagster_dev(mirror, tmp_path_factory):
    work = tmp_path_factory.mktemp("dagster_dev")
    home, lake, log = work / "home", work / "lake", work / "dagster_dev.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home), "MARKET_ETL_LAKE": str(lake),
        "BINANCE_BASE_URL": mirror.base_url, "BINANCE_LISTING_URL": mirror.base_url,
        "MARKET_ETL_SYMBOLS": ",".join(SYMBOLS), "MARKET_ETL_FIRST_MONTH": MONTHS[0],
        "MARKET_ETL_RETRY_BACKOFF": "0.05", "MARKET_ETL_AUTO_INGEST": "0",
    }
    # What `make dev` does: DAGSTER_HOME from the shipped dagster.yaml, pool limits from the settings.
    subprocess.run([sys.executable, "-m", "market_etl.cli", "init-home"], env=env, check=True, capture_output=True)
    assert (home / "dagster.yaml").read_text() == SHIPPED_DAGSTER_YAML.read_text()
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port),
             "-w", str(REPO / "workspace.yaml")],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so _stop reaches the webserver, daemon and code server
            preexec_fn=_sigint_by_default,
        )
    try:
        graphql = GraphQL(f"http://127.0.0.1:{port}/graphql")
        started = time.monotonic()
        _wait_for_graphql(graphql, proc, log)
        print(f"dagster dev serving the code location after {time.monotonic() - started:.0f}s")
        yield DagsterDev(graphql, lake, log)
    finally:
        seconds = _stop(proc) if proc.poll() is None else 0.0
        print(f"dagster dev stopped in {seconds:.1f}s")


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    # Ends sort before starts at the same instant: a slot freed and taken at once is not an overlap.
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def _metadata(materialization: dict) -> dict:
    return {e["label"]: e.get("intValue") for e in materialization["metadataEntries"]}


def test_backfill_of_the_whole_graph_materialises_every_partition_and_check(dagster_dev, mirror):
    graphql = dagster_dev.graphql
    assets = graphql.assets()
    assert ("raw", "trades_zip") in {a.path for a in assets}
    mirror.set_fault(f"{FLAKY.symbol}-trades-{FLAKY.month}.zip", "status", times=2, status=503)

    backfill = graphql.backfill(assets, CLEAN)

    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (backfill, dagster_dev.log.read_text()[-4000:])
    for asset in assets:
        partitions = CLEAN if asset.partitioned else None
        materialized = graphql.materializations(asset, partitions)
        if asset.partitioned:
            assert {m["partition"] for m in materialized} == set(CLEAN), asset.path
        else:
            assert materialized, asset.path
        results = graphql.check_results(asset, partitions)
        for check, _blocking in asset.checks:
            for partition in partitions or [None]:
                execution = results.get((check, partition))
                assert execution and execution["evaluation"], (asset.path, check, partition)
                assert execution["evaluation"]["success"], (asset.path, check, partition, execution)

    # Pools from the shipped dagster.yaml (+ `init-home`): every step of a pool ran, and its stages never held
    # more host slots at once than the pool's limit.
    steps = graphql.step_intervals(backfill["id"])
    held = graphql.host_slot_intervals(backfill["id"])
    for pool in {pool for a in assets for pool in a.pools}:
        members = ["__".join(a.path) for a in assets if pool in a.pools]
        assert sum(len(steps.get(m, [])) for m in members) == len(members) * len(CLEAN), (pool, steps)
        in_pool = [i for m in members for i in held.get(m, [])]
        assert len(in_pool) == len(members) * len(CLEAN), (pool, held)  # a fresh lake: every step ran its stage
        assert _max_overlap(in_pool) <= graphql.pool_limit(pool), (pool, in_pool)

    # The flaky archive answered 503 twice: the download stage retried inside the same run.
    [flaky] = graphql.materializations(next(a for a in assets if a.path == ("raw", "trades_zip")),
                                       [FLAKY.dagster_key()])
    assert _metadata(flaky)["attempts"] == 3
    assert mirror.count(f"{FLAKY.symbol}-trades-{FLAKY.month}.zip") == 3


def test_backfill_over_a_bad_month_shows_the_failed_check_and_blocks_downstream(dagster_dev):
    graphql = dagster_dev.graphql
    assets = graphql.assets()
    by_path = {a.path: a for a in assets}
    processed = by_path[PROCESSED]
    assert (BAD_PRICE_CHECK, True) in processed.checks

    backfill = graphql.backfill(assets, [BAD.dagster_key()])

    assert backfill["status"] in ("COMPLETED_FAILED", "FAILED", "COMPLETED"), backfill
    failed = graphql.check_results(processed, [BAD.dagster_key()]).get((BAD_PRICE_CHECK, BAD.dagster_key()))
    assert failed and failed["evaluation"] and not failed["evaluation"]["success"], failed
    assert failed["evaluation"]["severity"] == "ERROR"
    statuses = {tuple(s["assetKey"]["path"]): s for s in backfill["assetBackfillData"]["assetBackfillStatuses"]}
    downstream = _downstream_of(graphql, PROCESSED, assets)
    assert downstream, "processed/trades should feed the catalog and analytics assets"
    for path in downstream:
        asset = by_path[path]
        if asset.partitioned:
            assert not graphql.materializations(asset, [BAD.dagster_key()]), path
            assert statuses[path]["numPartitionsMaterialized"] == 0, statuses[path]
        else:
            assert not statuses[path]["materialized"], statuses[path]


DEPENDENCIES = "{ assetNodes { assetKey { path } dependedByKeys { path } } }"


def _downstream_of(graphql: GraphQL, root: tuple[str, ...], assets: list[Asset]) -> set[tuple[str, ...]]:
    children = {tuple(n["assetKey"]["path"]): [tuple(k["path"]) for k in n["dependedByKeys"]]
                for n in graphql(DEPENDENCIES)["assetNodes"]}
    seen: set[tuple[str, ...]] = set()
    frontier = list(children.get(root, []))
    while frontier:
        path = frontier.pop()
        if path not in seen:
            seen.add(path)
            frontier.extend(children.get(path, []))
    return seen & {a.path for a in assets}
