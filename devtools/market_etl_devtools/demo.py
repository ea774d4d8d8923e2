"""`make demo`: the whole pipeline, end to end, on a generated Binance mirror served on loopback.

Runs are real Dagster runs recorded in the persistent DAGSTER_HOME, so `make dev`
shows their history afterwards. A second demo finds everything up to date.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from market_etl_devtools.dev import write_demo_env

DEMO_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT")
DEMO_MONTHS = ("2025-07", "2025-08", "2025-09")
MIRROR_DIR = Path("data/mirror")


def _ensure_mirror(trades_per_day: int, seed: int) -> Path:
    from market_etl_devtools.mirror.generate import generate_mirror

    stamp = MIRROR_DIR / f".generated-{trades_per_day}-{seed}"
    if not stamp.exists():
        started = time.monotonic()
        files = generate_mirror(MIRROR_DIR, DEMO_SYMBOLS, DEMO_MONTHS, trades_per_day, seed=seed)
        stamp.touch()
        print(f"mirror: generated {len(files)} archives, {sum(f.rows for f in files):,} trades "
              f"in {time.monotonic() - started:.1f}s under {MIRROR_DIR}")
    return MIRROR_DIR


def _check_outcomes(result) -> list[str]:
    """One line per asset: each of its checks on this partition, passed or failed with its severity."""
    by_asset: dict[str, list[str]] = {}
    for evaluation in result.get_asset_check_evaluations():
        outcome = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
        by_asset.setdefault(evaluation.asset_key.to_user_string(), []).append(f"{evaluation.check_name}={outcome}")
    return [f"{asset} checks: {', '.join(checks)}" for asset, checks in by_asset.items()]


def run_demo(trades_per_day: int = 2000, seed: int = 7) -> int:
    import dagster as dg

    from market_etl.core.keys import TradePartition
    from market_etl.definitions import build_definitions
    from market_etl.instance import get_instance
    from market_etl_devtools.mirror.server import MirrorServer
    from market_etl.settings import Settings

    started = time.monotonic()
    mirror = _ensure_mirror(trades_per_day, seed)
    with MirrorServer(mirror) as server:
        os.environ["BINANCE_BASE_URL"] = server.base_url
        os.environ.setdefault("MARKET_ETL_SYMBOLS", ",".join(DEMO_SYMBOLS))
        os.environ.setdefault("MARKET_ETL_FIRST_MONTH", DEMO_MONTHS[0])
        # The demo's archives stream in well under the usual 5 s between progress lines: one line per write.
        os.environ.setdefault("MARKET_ETL_PROGRESS_SECONDS", "0")
        settings = Settings.from_env()
        instance = get_instance(settings)
        defs = build_definitions(settings)
        job = defs.resolve_implicit_global_asset_job_def()
        print(f"demo: lake {settings.lake}, mirror {server.base_url}, DAGSTER_HOME {instance.root_directory}")
        failures = 0
        for month in DEMO_MONTHS:
            for symbol in DEMO_SYMBOLS:
                partition = TradePartition(symbol, month)
                t0 = time.monotonic()
                result = job.execute_in_process(partition_key=partition.dagster_key(), instance=instance,
                                                raise_on_error=False)
                statuses = [
                    f"{'/'.join(m.asset_key.path)}={m.metadata['status'].value}" if "status" in m.metadata
                    else '/'.join(m.asset_key.path)
                    for m in (e.event_specific_data.materialization
                              for e in result.get_asset_materialization_events())
                ]
                ok = result.success
                failures += not ok
                print(f"  {partition}: {'ok' if ok else 'FAILED'} in {time.monotonic() - t0:.1f}s  "
                      + " ".join(statuses))
                for line in _check_outcomes(result):
                    print(f"      {line}")
    print(f"demo: {len(DEMO_SYMBOLS) * len(DEMO_MONTHS) - failures} partitions ok, {failures} failed, "
          f"{time.monotonic() - started:.1f}s")
    state = write_demo_env({"MARKET_ETL_LAKE": os.path.abspath(settings.lake) if "://" not in settings.lake
                            else settings.lake,
                            "MARKET_ETL_SYMBOLS": ",".join(settings.symbols),
                            "MARKET_ETL_FIRST_MONTH": settings.first_month,
                            "MARKET_ETL_DEMO_MIRROR": str(mirror.resolve())})
    print(f"demo: `make dev` now serves this mirror and lake ({state}); the real archive: make dev REAL_ARCHIVE=1")
    from market_etl.query_cli import show_demo_queries
    from market_etl.resources.sql import build_sql_engine

    show_demo_queries(build_sql_engine(settings), symbol=DEMO_SYMBOLS[0], date=f"{DEMO_MONTHS[0]}-15")
    return 1 if failures else 0
