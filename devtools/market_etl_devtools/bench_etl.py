"""`market-etl bench etl`: rows/s and peak RSS of the ETL stage's engines, beside bare DuckDB and Polars.

Input: one generated BTCUSDT 2025-07 month in Binance's spot format (`market_etl_devtools.mirror.generate`,
microsecond times, ~77 bytes a row; ~30M rows by default, cached in the work directory).

- `engine`: the stage with its default local engine (DuckDB, `market_etl.stages.engines.duckdb_engine`),
  every rule, quarantine, id verification, dedupe when needed, staged files and manifest.
- `stage`: the stage entry point's work with the Spark engine (`market_etl.stages.etl.run_stage`, what `python -m
  market_etl.stages.etl` runs) with every rule, the quarantine, the id verification (and dedupe when
  needed) and the checks, writing Snappy Parquet into a local lake.
- `duckdb`: the reference from docs/performance.md: read the same CSV with types, keep price > 0,
  qty > 0 and time inside the month, derive year/month/day/symbol, `COPY ... PARTITION_BY` to Snappy
  Parquet with the same column types. No quarantine, dedupe or checks.
- `polars`: the same reference job in Polars (typed `scan_csv`, same filter, a Parquet file per day).

Each engine runs in a fresh child process. Seconds are the child's wall time from process start to
exit (interpreter, imports and the JVM start included: end to end); peak RSS is the child's VmHWM
(plus its JVM's for the stage); CPU seconds are shown because other processes may share the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.core.memory import peak_rss_bytes

PARTITION = TradePartition("BTCUSDT", "2025-07")
DAYS = 31
ENGINES = {
    "engine": "ETL stage, DuckDB engine (the local default): every rule, quarantine, id checks, staged files",
    "stage": "ETL stage, Spark engine (local[*], what Glue runs): rules, quarantine, id checks, staged swap",
    "duckdb": "DuckDB reference: typed CSV read, same filter, COPY ... PARTITION_BY (year, month, day, symbol)",
    "polars": "Polars reference: typed CSV scan, same filter, one Parquet file per day",
}
SOURCE_TYPES = {"id": "BIGINT", "price": "DECIMAL(18,8)", "qty": "DECIMAL(28,8)", "quote_qty": "DECIMAL(28,8)",
                "time": "BIGINT", "is_buyer_maker": "BOOLEAN", "is_best_match": "BOOLEAN"}


def prepare_source(rows: int, workdir: Path) -> tuple[Path, int]:
    """A local lake whose raw_unzipped zone holds a generated month of about `rows` trades (cached)."""
    from market_etl.lake import LocalLake
    from market_etl_devtools.mirror.generate import generate_month

    trades_per_day = max(1, round(rows / DAYS))
    lake = LocalLake(workdir / f"etl-lake-{trades_per_day}")
    csv = lake.path(lake_key(Zone.RAW_UNZIPPED, PARTITION))
    stamp = csv.with_name(csv.name + ".rows")
    if not stamp.exists():
        print(f"bench: generating {trades_per_day * DAYS:,} trades of {PARTITION}", flush=True)
        generated = generate_month(workdir / "etl-mirror", PARTITION.symbol, PARTITION.month, trades_per_day, seed=1)
        with zipfile.ZipFile(generated.zip_path) as archive, archive.open(generated.csv_name) as member, \
                lake.writer(lake_key(Zone.RAW_UNZIPPED, PARTITION)) as out:
            shutil.copyfileobj(member, out, 1 << 20)
        generated.zip_path.unlink()
        stamp.write_text(str(generated.rows))
    return lake.root, int(stamp.read_text())


def _stage(lake_root: Path, engine: str = "spark") -> dict:
    from market_etl.stages.etl import run_stage, stage_arguments

    os.environ["MARKET_ETL_ETL_ENGINE"] = engine
    args = stage_arguments(["--symbol", PARTITION.symbol, "--month", PARTITION.month, "--lake", str(lake_root)])
    m = run_stage(args).metadata
    detail = {"etl_s": m["etl_seconds"], **{f"{k}_s": v for k, v in m["phase_seconds"].items()}}
    if engine == "spark":
        detail = {"jvm_start_s": m["jvm_start_seconds"], "spark_s": m["spark_seconds"], **detail}
    else:  # leave processed/ to the Spark engine's published files (what the pipeline bench registers)
        _remove_staged(lake_root, str(lake_root / m["manifest_key"]))
    return {"rows_out": m["rows_written"], "rows_rejected": m["rows_rejected"], "peak_rss_bytes": m["peak_rss_mb"] * 1e6,
            "cpu_seconds": m["cpu_seconds"], "detail": detail,
            "manifest_key": m["manifest_key"] if engine == "spark" else None}


def _remove_staged(lake_root: Path, manifest_path: str) -> None:
    from market_etl.core.staged import StagedVersion

    staged = StagedVersion.from_json(Path(manifest_path).read_text())
    for f in staged.trades_files + staged.rejected_files:
        (lake_root / f.key).unlink(missing_ok=True)
    Path(manifest_path).unlink()


def _polars(lake_root: Path) -> dict:
    """The Polars reference: the same job as `_duckdb`, one file per day (Polars' own Parquet writer)."""
    import calendar

    import polars as pl

    csv = lake_root / lake_key(Zone.RAW_UNZIPPED, PARTITION)
    out = lake_root / "polars-reference"
    shutil.rmtree(out, ignore_errors=True)
    start = calendar.timegm(PARTITION.first_day.timetuple()) * 10**6
    end = calendar.timegm(PARTITION.next_month_first_day.timetuple()) * 10**6
    schema = {"id": pl.Int64, "price": pl.Decimal(18, 8), "qty": pl.Decimal(28, 8), "quote_qty": pl.Decimal(28, 8),
              "time": pl.Int64, "is_buyer_maker": pl.Boolean, "is_best_match": pl.Boolean}
    frame = (pl.scan_csv(csv, has_header=False, schema=schema)
             .filter((pl.col("price") > 0) & (pl.col("qty") > 0) & (pl.col("time") >= start) & (pl.col("time") < end))
             .select(pl.col("id").alias("trade_id"), "price", pl.col("qty").alias("quantity"), "quote_qty",
                     pl.col("time").cast(pl.Datetime("us", "UTC")).alias("trade_time"), "is_buyer_maker",
                     "is_best_match", pl.lit(PARTITION.year, pl.Int32).alias("year"),
                     pl.lit(PARTITION.month_number, pl.Int32).alias("month"),
                     ((pl.col("time") - start) // 86_400_000_000 + 1).cast(pl.Int32).alias("day"),
                     pl.lit(PARTITION.symbol).alias("symbol"))
             .collect())
    out.mkdir(parents=True)
    for (day,), part in frame.partition_by("day", as_dict=True).items():
        part.write_parquet(out / f"day={day}.parquet", compression="snappy", statistics=True)
    own = os.times()
    return {"rows_out": frame.height, "rows_rejected": None, "peak_rss_bytes": peak_rss_bytes(),
            "cpu_seconds": round(own.user + own.system, 1), "detail": {}}


def _duckdb(lake_root: Path) -> dict:
    import calendar

    import duckdb

    csv = lake_root / lake_key(Zone.RAW_UNZIPPED, PARTITION)
    out = lake_root / "duckdb-reference"
    shutil.rmtree(out, ignore_errors=True)
    start = calendar.timegm(PARTITION.first_day.timetuple()) * 10**6
    end = calendar.timegm(PARTITION.next_month_first_day.timetuple()) * 10**6
    columns = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in SOURCE_TYPES.items()) + "}"
    con = duckdb.connect()
    [(rows_out,)] = con.execute(f"""
        COPY (
            SELECT id AS trade_id, price, qty AS quantity, quote_qty, make_timestamp(time) AS trade_time,
                   is_buyer_maker, is_best_match, {PARTITION.year} AS year, {PARTITION.month_number} AS month,
                   CAST((time - {start}) // 86400000000 + 1 AS INTEGER) AS day, '{PARTITION.symbol}' AS symbol
            FROM read_csv('{csv}', header = false, auto_detect = false, columns = {columns})
            WHERE price > 0 AND qty > 0 AND time >= {start} AND time < {end}
        ) TO '{out}' (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (year, month, day, symbol))
    """).fetchall()
    own = os.times()
    return {"rows_out": rows_out, "rows_rejected": None, "peak_rss_bytes": peak_rss_bytes(),
            "cpu_seconds": round(own.user + own.system, 1), "detail": {}}


def _child(engine: str, lake_root: Path) -> dict:
    children = {"engine": lambda root: _stage(root, "duckdb"), "stage": _stage, "duckdb": _duckdb, "polars": _polars}
    return children[engine](lake_root)


def run_child(module: str, *args: str) -> dict:
    """`python -m <module> --child <args>` in a fresh process; returns the JSON of its last stdout line.

    Adds `seconds`: the child's wall time from spawn to exit (interpreter, imports and any JVM start
    included), since production starts a process per stage and pays all of it.
    """
    env = {**os.environ, "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}
    started = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", module, "--child", *args], stdout=subprocess.PIPE, text=True,
                           check=True, env=env)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - started
    return result


def run_engine(engine: str, lake_root: Path, source_rows: int) -> dict:
    """One engine in its own child process on `lake_root`'s CSV; fails unless it wrote every source row."""
    result = run_child("market_etl_devtools.bench_etl", engine, str(lake_root))
    if result["rows_out"] != source_rows:
        raise RuntimeError(f"{engine} wrote {result['rows_out']:,} rows, expected {source_rows:,}")
    return result


def bench_etl(rows: int, workdir: str | os.PathLike, *, repeat: int = 1, engines=tuple(ENGINES)) -> list[dict]:
    """Run each engine `repeat` times (interleaved) on the same input; print and return the best of each."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lake_root, source_rows = prepare_source(rows, workdir)
    csv_bytes = (lake_root / lake_key(Zone.RAW_UNZIPPED, PARTITION)).stat().st_size
    print(f"bench: {PARTITION}: {source_rows:,} rows, {csv_bytes / 1e9:.2f} GB of CSV, {os.cpu_count()} cores, "
          f"{repeat} run(s) per engine, load average {os.getloadavg()[0]:.1f}", flush=True)
    runs: dict[str, list[dict]] = {engine: [] for engine in engines}
    for _ in range(repeat):
        for engine in engines:
            result = run_engine(engine, lake_root, source_rows)
            runs[engine].append(result)
            print(f"bench: {engine}: {result['seconds']:.1f}s {result['detail']}", flush=True)
    shutil.rmtree(lake_root / "duckdb-reference", ignore_errors=True)
    shutil.rmtree(lake_root / "polars-reference", ignore_errors=True)
    shutil.rmtree(lake_root / "processed", ignore_errors=True)
    cores = os.cpu_count() or 1
    table = []
    for engine, results in runs.items():
        best = min(results, key=lambda r: r["seconds"])
        table.append({"engine": engine, "what": ENGINES[engine], "seconds": round(best["seconds"], 1),
                      "rows_per_s": round(source_rows / best["seconds"]),
                      "rows_per_s_per_core": round(source_rows / best["seconds"] / cores),
                      "rows_per_cpu_s": round(source_rows / best["cpu_seconds"]) if best["cpu_seconds"] else None,
                      "peak_rss_mb": round(max(r["peak_rss_bytes"] for r in results) / 1e6)})
    print("| engine | wall s (end to end) | rows/s | rows/s per core | rows per CPU-second | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print(f"| {row['what']} | {row['seconds']} | {row['rows_per_s']:,} | {row['rows_per_s_per_core']:,} | "
              f"{row['rows_per_cpu_s'] or 0:,} | {row['peak_rss_mb']:,} |")
    by_engine = {row["engine"]: row for row in table}
    bare = [by_engine[name]["rows_per_s"] for name in ("duckdb", "polars") if name in by_engine]
    for name in ("engine", "stage"):
        if name in by_engine and bare:
            print(f"bench: {name} / fastest bare engine = {by_engine[name]['rows_per_s'] / max(bare):.2f} "
                  "(same input, same run)")
    print(f"bench: load average at the end {os.getloadavg()[0]:.1f}")
    return table


def register(sub: argparse._SubParsersAction) -> None:
    """`market-etl bench etl` (sub is the `bench` command's subparsers)."""
    etl = sub.add_parser("etl", help="Spark ETL stage rows/s and peak RSS, beside DuckDB on the same month")
    etl.add_argument("--rows", type=int, default=30_000_000, help="rows in the generated month (default 30M)")
    etl.add_argument("--workdir", default="benchmarks/work", help="where the input is cached and outputs written")
    etl.add_argument("--repeat", type=int, default=1, help="runs per engine; the best one is reported")
    etl.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, from {', '.join(ENGINES)}")
    etl.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    bench_etl(args.rows, args.workdir, repeat=args.repeat, engines=tuple(args.engines.split(",")))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], Path(sys.argv[3]))))
    else:
        sys.exit("usage: python -m market_etl_devtools.bench_etl --child ENGINE LAKE_ROOT (use `market-etl bench etl`)")
