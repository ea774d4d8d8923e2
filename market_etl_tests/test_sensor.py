"""The new-months sensor against a real mirror: exactly the published or republished partitions, one listing per symbol."""
import datetime as dt
import json

import dagster as dg
import pytest

from market_etl.core.keys import TradePartition
from market_etl.core.listing import ListingError, list_published_months
from market_etl.definitions import build_definitions
from market_etl.defs.assets import RAW_TRADES_ZIP
from market_etl.defs.sensors import NEW_MONTHS_SENSOR_NAME
from market_etl.mirror.generate import generate_month, generate_mirror
from market_etl.mirror.server import MirrorServer
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
        this_month = dt.date.today().strftime("%Y-%m")
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
