"""raw/trades_zip through real Dagster runs: the stage subprocess, Pipes metadata, data version, pools (case 7)."""
import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from market_etl.core.keys import TradePartition
from market_etl.definitions import build_definitions
from market_etl.defs.keys import RAW_TRADES_ZIP
from market_etl_devtools.mirror.generate import generate_mirror
from market_etl_devtools.mirror.server import MirrorServer
from market_etl.settings import Settings

RAW = RAW_TRADES_ZIP
SYMBOLS = ("BTCUSDT", "ETHUSDT")
MONTHS = ("2025-07", "2025-08")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    generate_mirror(root, SYMBOLS, MONTHS, trades_per_day=50, seed=3)
    with MirrorServer(root) as server:
        yield server


def _env(mirror, lake, **extra):
    return {
        "BINANCE_BASE_URL": mirror.base_url, "MARKET_ETL_LAKE": str(lake),
        "MARKET_ETL_SYMBOLS": ",".join(SYMBOLS), "MARKET_ETL_FIRST_MONTH": MONTHS[0],
        "MARKET_ETL_RETRY_BACKOFF": "0.01", **extra,
    }


def _materialize(settings, partition, instance):
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(partition_key=partition.dagster_key(), instance=instance,
                                  asset_selection=[RAW], raise_on_error=False)


def test_materialization_reports_metadata_and_data_version(mirror, tmp_path):
    settings = Settings.from_env(_env(mirror, tmp_path / "lake"))
    partition = TradePartition("ETHUSDT", "2025-08")
    with dg.instance_for_test() as instance:
        result = _materialize(settings, partition, instance)
        assert result.success
        [mat] = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
        meta = {k: v.value for k, v in mat.metadata.items()}
        assert meta["status"] == "downloaded" and meta["url"].endswith("ETHUSDT-trades-2025-08.zip")
        for field in ("bytes", "sha256", "seconds", "mb_per_s", "last_modified"):
            assert field in meta
        assert mat.partition == partition.dagster_key()
        assert mat.tags["dagster/data_version"] == meta["sha256"]
        [check] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert check.check_name == "checksum_verified" and check.passed
        assert check.partition == partition.dagster_key()  # shown per partition in the UI

        again = _materialize(settings, partition, instance)
        [mat2] = [e.event_specific_data.materialization for e in again.get_asset_materialization_events()]
        assert mat2.metadata["status"].value == "up_to_date"
        assert mat2.tags["dagster/data_version"] == meta["sha256"]
        [check2] = again.get_asset_check_evaluations()
        assert check2.passed and check2.metadata["sha256"].value == meta["sha256"]
        # Decided in the run's own process (one CHECKSUM request): no stage was launched.
        logs = [r.user_message for r in instance.all_logs(again.run_id)]
        assert not any(m.startswith("stage download:") for m in logs) and any("no stage launched" in m for m in logs)


def test_not_published_month_fails_the_run_clearly(mirror, tmp_path):
    settings = Settings.from_env(_env(mirror, tmp_path / "lake"))
    mirror.set_fault("BTCUSDT-trades-2025-08.zip", "not_found")
    try:
        with dg.instance_for_test() as instance:
            result = _materialize(settings, TradePartition("BTCUSDT", "2025-08"), instance)
            assert not result.success
            [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            assert "not published yet" in str(failure.event_specific_data.error)
            # The stage's own reason, reported through Pipes, is the failure's description.
            description = failure.event_specific_data.user_failure_data.description
            assert description.startswith("stage 'download' failed: NotPublished: ")
    finally:
        mirror.clear_faults()
    assert not (tmp_path / "lake" / "raw").exists() or not any((tmp_path / "lake" / "raw").rglob("*.zip"))


def test_concurrent_runs_never_exceed_the_download_pool(mirror, tmp_path):
    """Case 7: four partitions launched at once with a pool limit of 2.

    Each download stalls long enough that unthrottled runs would overlap 3-4 deep; the pool must
    cap that at exactly 2 (reaching 2 shows the runs did overlap, so the cap is what held them).
    """
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, **_env(mirror, tmp_path / "lake", MARKET_ETL_DOWNLOAD_CONCURRENCY="2"),
           "DAGSTER_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "market_etl.cli", "init-home"], env=env, check=True,
                   capture_output=True)
    for symbol in SYMBOLS:
        for month in MONTHS:
            # Long enough for the four CLI processes (3-8 s each to start, more under load) to meet at the pool.
            mirror.set_fault(f"{symbol}-trades-{month}.zip", "stall", seconds=15.0, times=1)
    mirror.reset_stats()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "market_etl.definitions",
             "--select", "raw/trades_zip", "--partition", TradePartition(s, m).dagster_key()],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for s in SYMBOLS for m in MONTHS
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    mirror.clear_faults()
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum(mirror.count(f"{s}-trades-{m}.zip") for s in SYMBOLS for m in MONTHS) >= 4
    assert mirror.max_concurrent == 2


def test_a_download_waits_for_the_host_slot_of_its_pool(mirror, tmp_path):
    """The file lock behind the pool: while another process holds the only download slot on this machine,
    the step's stage does not start (no archive requested); it starts once the slot is free."""
    from market_etl.defs.keys import DOWNLOAD_POOL

    settings = Settings.from_env(_env(mirror, tmp_path / "lake"))
    partition = TradePartition("BTCUSDT", "2025-07")
    with dg.instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots(DOWNLOAD_POOL, 1)
        folder = Path(instance.root_directory) / "pool-slots" / DOWNLOAD_POOL
        folder.mkdir(parents=True)
        held = open(folder / "0.lock", "a")
        fcntl.flock(held, fcntl.LOCK_EX)
        mirror.reset_stats()
        results = []
        run = threading.Thread(target=lambda: results.append(_materialize(settings, partition, instance)))
        run.start()
        try:
            deadline = time.monotonic() + 120
            while not any("host slots busy" in (r.user_message or "") for r in _all_logs(instance)):
                assert run.is_alive() and time.monotonic() < deadline, "the step never waited for the slot"
                time.sleep(0.1)
            assert mirror.count("BTCUSDT-trades-2025-07.zip") == 0
        finally:
            held.close()
            run.join(timeout=300)
        [result] = results
        assert result.success
        assert mirror.count("BTCUSDT-trades-2025-07.zip") == 1


def _all_logs(instance):
    return [record for run in instance.get_runs() for record in instance.all_logs(run.run_id)]
