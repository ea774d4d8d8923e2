"""The new-months sensor against a real mirror (exactly the new or republished partitions, one listing per symbol),
and the declarative automation that carries them downstream."""
import datetime as dt
import json

import dagster as dg
import pytest

from market_etl.core.keys import TradePartition
from market_etl.core.listing import ListingError, list_published_months
from market_etl.definitions import build_definitions
from market_etl.defs.keys import PROCESSED_TRADES, RAW_TRADES_ZIP
from market_etl.defs.sensors import NEW_MONTHS_SENSOR_NAME
from market_etl_devtools.mirror.generate import Defects, generate_mirror, generate_month
from market_etl_devtools.mirror.server import MirrorServer
from market_etl.settings import Settings

SYMBOLS = ("BTCUSDT", "ETHUSDT")
TRADES_PER_DAY = 20


@pytest.fixture
def mirror(tmp_path):
    """2025-06 (before the first configured month), 2025-07 and 2025-08 for both symbols; mutated by tests."""
    root = tmp_path / "mirror"
    generate_mirror(root, SYMBOLS, ["2025-06", "2025-07", "2025-08"], trades_per_day=TRADES_PER_DAY)
    with MirrorServer(root) as server:
        yield server


def _settings(mirror, lake, **env) -> Settings:
    return Settings.from_env({
        "BINANCE_BASE_URL": mirror.base_url, "BINANCE_LISTING_URL": mirror.base_url,
        "MARKET_ETL_LAKE": str(lake), "MARKET_ETL_SYMBOLS": ",".join(SYMBOLS),
        "MARKET_ETL_FIRST_MONTH": "2025-07", "MARKET_ETL_RETRY_BACKOFF": "0.01", **env,
    })


class Ticks:
    """Evaluates the real sensor of the real definitions tick after tick, carrying the cursor like the daemon."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, mirror: MirrorServer):
        self.defs = defs
        self.sensor = defs.resolve_sensor_def(NEW_MONTHS_SENSOR_NAME)
        self.instance = instance
        self.mirror = mirror
        self.cursor: str | None = None
        self.listing_requests = 0

    def tick(self) -> list[dg.RunRequest]:
        self.mirror.reset_stats()
        context = dg.build_sensor_context(cursor=self.cursor, instance=self.instance, definitions=self.defs)
        result = self.sensor.evaluate_tick(context)
        self.cursor = result.cursor
        log = self.mirror.request_log
        assert all(path == "/" for _, path, _ in log), f"the sensor must only list, got {log}"
        self.listing_requests = len(log)
        return list(result.run_requests or [])


def _keys(run_requests) -> set[str]:
    return {r.partition_key for r in run_requests}


def _key(symbol: str, month: str) -> str:
    return TradePartition(symbol, month).dagster_key()


def test_sensor_requests_exactly_new_and_republished_months(mirror, tmp_path):
    root = mirror.root
    defs = build_definitions(_settings(mirror, tmp_path / "lake"))
    with dg.instance_for_test() as instance:
        ticks = Ticks(defs, instance, mirror)

        first = ticks.tick()
        # 2025-06 is published but before the first configured month; 2025-09 .. last month are not published.
        assert _keys(first) == {_key(s, m) for s in SYMBOLS for m in ("2025-07", "2025-08")}
        assert all(r.asset_selection == [RAW_TRADES_ZIP] and r.tags["market_etl/trigger"] == "published"
                   for r in first)
        assert ticks.listing_requests == len(SYMBOLS)
        assert json.loads(ticks.cursor).keys() == set(SYMBOLS)

        assert ticks.tick() == []
        assert ticks.listing_requests == len(SYMBOLS)

        # Published mid-test: ETHUSDT 2025-09 complete; BTCUSDT 2025-10 zip uploaded, its CHECKSUM not yet.
        generate_month(root, "ETHUSDT", "2025-09", TRADES_PER_DAY)
        pending = generate_month(root, "BTCUSDT", "2025-10", TRADES_PER_DAY)
        checksum = pending.checksum_path.read_bytes()
        pending.checksum_path.unlink()
        # The current month can appear upstream as daily data; it is outside the monthly partitions.
        this_month = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")  # the partitions' calendar is UTC
        generate_month(root, "ETHUSDT", this_month, TRADES_PER_DAY)
        assert _keys(ticks.tick()) == {_key("ETHUSDT", "2025-09")}
        assert ticks.listing_requests == len(SYMBOLS)

        pending.checksum_path.write_bytes(checksum)
        assert _keys(ticks.tick()) == {_key("BTCUSDT", "2025-10")}

        # Republished with new content (new ETag): requested again, once.
        generate_month(root, "BTCUSDT", "2025-07", TRADES_PER_DAY, seed=99)
        [again] = ticks.tick()
        assert again.partition_key == _key("BTCUSDT", "2025-07")
        assert again.tags["market_etl/trigger"] == "republished"
        assert ticks.tick() == []
        assert ticks.listing_requests == len(SYMBOLS)


def test_republished_month_is_downloaded_again_with_both_digests(mirror, tmp_path):
    """Sensor -> real run -> republish -> sensor -> real run: the raw file is replaced, old and new sha256 recorded."""
    defs = build_definitions(_settings(mirror, tmp_path / "lake", MARKET_ETL_SYMBOLS="BTCUSDT"))
    job = defs.resolve_implicit_global_asset_job_def()
    target = _key("BTCUSDT", "2025-08")

    def run(request: dg.RunRequest) -> dict:
        result = job.execute_in_process(partition_key=request.partition_key, asset_selection=[RAW_TRADES_ZIP],
                                        instance=instance, tags=request.tags)
        [mat] = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
        return {k: v.value for k, v in mat.metadata.items()}

    with dg.instance_for_test() as instance:
        ticks = Ticks(defs, instance, mirror)
        first = run(next(r for r in ticks.tick() if r.partition_key == target))
        assert first["status"] == "downloaded"

        republished = generate_month(mirror.root, "BTCUSDT", "2025-08", TRADES_PER_DAY, seed=5)
        [request] = ticks.tick()
        second = run(request)
        assert second["status"] == "replaced"
        assert second["previous_sha256"] == first["sha256"]
        assert second["sha256"] == republished.sha256 != first["sha256"]


def test_listing_follows_pages(mirror):
    """A listing of more keys than a page holds is followed through NextMarker: one request per page."""
    with MirrorServer(mirror.root, page_size=2) as paged:
        months = list_published_months("BTCUSDT", paged.base_url)
        assert [m.month for m in months] == ["2025-06", "2025-07", "2025-08"]
        assert all(m.has_checksum and len(m.etag) == 32 and m.size > 0 for m in months)
        assert paged.count("/") == 3  # 6 keys (zip + CHECKSUM per month), 2 a page


def test_tick_fails_visibly_when_no_symbol_can_be_listed(mirror, tmp_path):
    with MirrorServer(mirror.root) as gone:
        unreachable = gone.base_url
    defs = build_definitions(_settings(mirror, tmp_path / "lake", BINANCE_LISTING_URL=unreachable))
    with dg.instance_for_test() as instance:
        sensor = defs.resolve_sensor_def(NEW_MONTHS_SENSOR_NAME)
        with pytest.raises(Exception, match="no symbol could be listed") as failure:
            sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert isinstance(failure.value, ListingError) or isinstance(failure.value.__cause__, ListingError)


def _automated(defs: dg.Definitions) -> list[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return [key for key in graph.get_all_asset_keys() if graph.get(key).automation_condition is not None]


def _downstream(defs: dg.Definitions, root: dg.AssetKey) -> set[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    seen: set[dg.AssetKey] = set()
    frontier = [root]
    while frontier:
        for child in graph.get(frontier.pop()).child_keys:
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return seen


class Daemon:
    """Ticks the automation conditions and runs what they request, as the daemon would.

    The cursor lives across calls like the daemon's: conditions such as "dependency updated since the
    last evaluation" only mean something relative to the previous tick.
    """

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None

    def settle(self, max_ticks: int = 8) -> set[tuple[dg.AssetKey, str]]:
        """Tick until nothing more is requested; returns everything requested on the way."""
        job = self.defs.resolve_implicit_global_asset_job_def()
        automated = _automated(self.defs)
        requested_ever: set[tuple[dg.AssetKey, str]] = set()
        for _ in range(max_ticks):
            result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
            self.cursor = result.cursor
            requested = {(key, p) for key in automated for p in result.get_requested_partitions(key)}
            if not requested:
                return requested_ever
            requested_ever |= requested
            for partition in sorted({p for _, p in requested}):
                job.execute_in_process(partition_key=partition, instance=self.instance, raise_on_error=False,
                                       asset_selection=[key for key, p in requested if p == partition])
        raise AssertionError(f"automation still requesting after {max_ticks} ticks: {requested}")


BLOCKING_PRICE_CHECK = "positive_prices"


def test_downstream_follows_by_automation_and_stops_at_a_failed_blocking_check(tmp_path):
    """The clean month: sensor -> raw, then automation alone carries it through the whole graph. The bad month:
    a user materialises it up to processed/trades, whose blocking check fails; automation must not take it
    further, although its upstream was updated by a run that did not target the downstream assets."""
    root = tmp_path / "mirror"
    good, bad = TradePartition("BTCUSDT", "2025-07"), TradePartition("BTCUSDT", "2025-08")
    generate_month(root, good.symbol, good.month, TRADES_PER_DAY)
    generate_month(root, bad.symbol, bad.month, TRADES_PER_DAY, defects=Defects(bad_values=3))
    with MirrorServer(root) as mirror:
        defs = build_definitions(_settings(mirror, tmp_path / "lake", MARKET_ETL_SYMBOLS="BTCUSDT"))
        automated = _automated(defs)
        assert PROCESSED_TRADES in automated
        job = defs.resolve_implicit_global_asset_job_def()
        with dg.instance_for_test() as instance:
            daemon = Daemon(defs, instance)
            assert daemon.settle() == set(), "nothing may run before raw data exists"
            requests_ = {r.partition_key: r for r in Ticks(defs, instance, mirror).tick()}
            assert requests_.keys() == {good.dagster_key(), bad.dagster_key()}
            assert job.execute_in_process(partition_key=good.dagster_key(), asset_selection=[RAW_TRADES_ZIP],
                                          instance=instance, tags=requests_[good.dagster_key()].tags).success
            lake_group = [RAW_TRADES_ZIP, *(k for k in automated if k not in _downstream(defs, PROCESSED_TRADES))]
            user_run = job.execute_in_process(partition_key=bad.dagster_key(), asset_selection=lake_group,
                                              instance=instance, raise_on_error=False)
            assert not user_run.success

            requested = daemon.settle()

            def materialized(key: dg.AssetKey) -> set[str]:
                return set(instance.get_materialized_partitions(key))

            assert {p for _, p in requested} == {good.dagster_key()}
            for key in automated:
                assert good.dagster_key() in materialized(key), f"{key.to_user_string()} did not follow"
            [failed] = [record for record in instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(PROCESSED_TRADES, BLOCKING_PRICE_CHECK), limit=20) if record.run_id == user_run.run_id]
            assert failed.partition == bad.dagster_key()
            assert failed.event.dagster_event.event_specific_data.passed is False
            assert bad.dagster_key() in materialized(PROCESSED_TRADES), "a failed check keeps its materialisation"
            for key in _downstream(defs, PROCESSED_TRADES):
                assert bad.dagster_key() not in materialized(key), f"{key.to_user_string()} ran past a failed check"
