"""`market-etl bench pipeline` (what `make bench` runs): the whole pipeline on one generated month, stage by stage.

Input: one BTCUSDT 2025-07 month in Binance's spot format from `market_etl_devtools.mirror.generate` (clean,
microsecond times, ~77 bytes of CSV a row; 30M rows by default). It is generated once per size and cached
in the work directory; generation is timed but is not a stage. Into a fresh local lake, in production order:

1. download: from a loopback `MirrorServer` into the raw zone, sha256 checked against the .CHECKSUM
2. unzip: raw -> raw_unzipped
3. ETL: the stage with its default (DuckDB) engine, with the Spark engine, then the bare DuckDB and Polars
   references of `bench_etl` on the same CSV in the same run
4. publish: commit the staged month to the Iceberg table market_data.trades_binance (one transaction,
   seconds per commit of a 30-day month) and refresh the DuckDB views; analytics: ohlcv_1m, daily_trade_stats
5. query: the minute VWAP (`vwap_1m`) of one day, as `market-etl query` runs it

How each stage runs: in a fresh child process that calls what the stage's entry point calls, with the
arguments the launcher passes (`download_archive`, `unzip_partition` after `reuse_freed_buffers`,
`jobs.etl.run_stage` through bench_etl's child, the `DuckDBSqlEngine` methods), and prints its counts,
peak RSS (its VmHWM, plus the JVM's for Spark) and CPU seconds as JSON. Not `python -m
market_etl.stages.<stage>` itself: an entry point reports its figures through Dagster Pipes, which outside
Dagster has no reader (dagster_pipes substitutes a MagicMock: the figures are lost and ~7 MiB of RSS is
added that the real stage never has), and a parent cannot read a finished child's VmHWM (ru_maxrss carries
the parent's across exec). What is left out is a few small Pipes message writes per stage.

What a stage's seconds cover follows what production pays:
- download, unzip, ETL (and the DuckDB reference) run as a process each in production: seconds are the
  child's wall time from spawn to exit (interpreter, imports, JVM start included), CPU seconds the whole
  child's (JVM included). "work s" beside them is the stage's own timer; the unzip target is stated on it.
- catalog, analytics and the query are calls inside a running process (the Dagster run, `market-etl
  query`): seconds and CPU seconds are the call's. Peak RSS is still the whole child's, Dagster's imports
  included (the SQL engine is a Dagster resource), as in the run process.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from market_etl_devtools.bench_etl import DAYS, PARTITION, run_child, run_engine
from market_etl.core.memory import peak_rss_bytes

DEFAULT_ROWS = 30_000_000
QUERY = "vwap_1m"
QUERY_DATE = f"{PARTITION.month}-15"
ANALYTICS = ("ohlcv_1m", "daily_trade_stats")
#: The original design's figures and the targets of the unzip (3) and ETL (4) issues.
DESIGN_ROWS, DESIGN_SECONDS, DESIGN_VCPUS = 632_046_300, 18 * 60, 40
DESIGN_ROWS_PER_HOUR = 350e6
UNZIP_TARGET_MB_S, UNZIP_PREVIOUS_MB_S, UNZIP_TARGET_RSS_MIB = 500, 361, 64
#: Issue 13: the default (DuckDB) engine end to end, its share of the fastest bare engine, its memory; Spark's floor.
ETL_TARGET_ROWS_S, ETL_TARGET_SHARE_OF_BARE, ETL_TARGET_RSS_MB = 1_200_000, 0.5, 3000
SPARK_TARGET_ROWS_S = 350_000
ETL_NAME = "ETL (stage, DuckDB engine: the local default)"
SPARK_NAME = "ETL (stage, Spark engine)"
BARE_NAMES = ("ETL reference (bare DuckDB, same CSV)", "ETL reference (bare Polars, same CSV)")


@dataclass(frozen=True)
class Month:
    """The generated source month: where its mirror is and what it holds (recorded when generated)."""

    mirror: Path
    rows: int
    sha256: str
    zip_bytes: int
    csv_bytes: int
    generation_seconds: float
    cached: bool


def generated_month(rows: int, workdir: Path) -> Month:
    """A mirror holding a generated month of about `rows` trades; made once per size, then reused.

    The facts file is written last, so its presence means the archive and its CHECKSUM are complete.
    """
    from market_etl.core.binance import archive_url
    from market_etl_devtools.mirror.generate import generate_month

    trades_per_day = max(1, round(rows / DAYS))
    mirror = workdir / f"pipeline-mirror-{trades_per_day}"
    facts = workdir / f"pipeline-mirror-{trades_per_day}.json"
    archive = mirror / archive_url("", PARTITION).lstrip("/")  # where the mirror serves it from
    cached = facts.exists() and archive.exists()
    if not cached:
        print(f"bench: generating {trades_per_day * DAYS:,} trades of {PARTITION} (kept for later runs)", flush=True)
        shutil.rmtree(mirror, ignore_errors=True)
        started = time.perf_counter()
        month = generate_month(mirror, PARTITION.symbol, PARTITION.month, trades_per_day, seed=1)
        facts.write_text(json.dumps({
            "rows": month.rows, "sha256": month.sha256, "zip_bytes": month.zip_path.stat().st_size,
            "csv_bytes": month.csv_bytes, "generation_seconds": round(time.perf_counter() - started, 1)}))
    return Month(mirror=mirror, cached=cached, **json.loads(facts.read_text()))


# ---------------------------------------------------------------- inside the child processes

def _sql_engine(lake_root: Path):
    from market_etl.resources.sql import DuckDBSqlEngine

    return DuckDBSqlEngine(lake_url=str(lake_root))


def _work(stage: str, lake_root: Path, arg: str | None) -> Callable[[], dict]:
    """The stage's work with imports done and nothing started; returns its counts when called."""
    from market_etl.lake import LocalLake

    lake = LocalLake(lake_root)
    if stage == "download":
        from market_etl.core.download import download_archive

        def download() -> dict:
            result = download_archive(PARTITION, arg, lake)  # the entry point's defaults: timeout, retries
            return {"bytes": result.bytes, "sha256": result.sha256, "checksum_verified": result.checksum_verified}
        return download
    if stage == "unzip":
        from market_etl.core.memory import reuse_freed_buffers
        from market_etl.core.unzip import unzip_partition

        reuse_freed_buffers()  # as the stage's entry point does

        def unzip() -> dict:
            result = unzip_partition(PARTITION, lake)
            return {"bytes": result.uncompressed_bytes, "rows": result.lines}
        return unzip
    engine = _sql_engine(lake_root)
    from market_etl.lake.iceberg import open_catalog

    if stage == "catalog":
        from market_etl.lake.iceberg import publish_staged

        def publish() -> dict:
            # The publish step: one Iceberg commit of the month's staged files, then the DuckDB views.
            catalog = open_catalog(lake)
            commit = publish_staged(catalog, lake, arg, "bench")  # the manifest the ETL stage reported
            engine.refresh_views(catalog)
            return {"rows": commit.rows_added, "files": commit.files_added, "snapshot": commit.snapshot_id}
        return publish
    if stage == "analytics":
        from market_etl.defs.analytics import ANALYTICS_CHECKS

        checks = [(name, query, True) for key, name, query, _ in ANALYTICS_CHECKS if key.path[-1] == arg]

        def analytics() -> dict:
            # Write, audit (the dataset's checks on the audit branch), publish: what the asset does.
            build = engine.build_analytics(arg, PARTITION, open_catalog(lake), checks, force=True)
            return {"rows": build.files.rows, "bytes": build.files.bytes, "status": build.status}
        return analytics
    if stage == "query":
        from market_etl.core.sql import bind, get_query, parameters_for

        query = bind(get_query(QUERY), parameters_for(symbol=PARTITION.symbol, date=arg))

        def run_query() -> dict:
            result = engine.query(query)
            return {"rows": len(result.rows), "trades": sum(r["trades"] for r in result.records()),
                    "files_scanned": result.files_scanned, "files_total": result.files_total,
                    "bytes_scanned": result.bytes_scanned}
        return run_query
    raise ValueError(f"unknown stage {stage!r}")


def _child(stage: str, lake_root: Path, arg: str | None) -> dict:
    work = _work(stage, lake_root, arg)
    started, cpu = time.perf_counter(), time.process_time()
    facts = work()
    own = os.times()
    return {**facts, "work_seconds": time.perf_counter() - started, "work_cpu_seconds": time.process_time() - cpu,
            "cpu_seconds": own.user + own.system, "peak_rss_bytes": peak_rss_bytes()}


# ---------------------------------------------------------------- in the parent

@dataclass(frozen=True)
class StageResult:
    """One row of the results table. `rate` is `amount` per second of `seconds`."""

    stage: str
    seconds: float
    amount: float | None
    unit: str | None
    work_seconds: float | None
    peak_rss_mb: float
    cpu_seconds: float
    output: str

    @property
    def rate(self) -> float | None:
        return self.amount / self.seconds if self.amount is not None and self.seconds > 0 else None

    @property
    def rate_text(self) -> str:
        if self.rate is None:
            return "-"
        return f"{self.rate:,.0f} {self.unit}" if self.rate >= 100 else f"{self.rate:,.1f} {self.unit}"


def _stage_child(stage: str, lake_root: Path, arg: str | None = None) -> dict:
    return run_child("market_etl_devtools.bench_pipeline", stage, str(lake_root), *([arg] if arg else []))


def _expect(what: str, got, expected) -> None:
    if got != expected:
        raise RuntimeError(f"bench: {what}: got {got!r}, expected {expected!r}; the pipeline lost or changed data")


def _process_stage(stage: str, r: dict, amount: float, unit: str, output: str,
                   work_seconds: float | None) -> StageResult:
    """A stage production runs as its own process: seconds and CPU of the whole child."""
    return StageResult(stage, r["seconds"], amount, unit, work_seconds, r["peak_rss_bytes"] / 1e6,
                       r["cpu_seconds"], output)


def _call_stage(stage: str, r: dict, amount: float | None, unit: str | None, output: str) -> StageResult:
    """A call production makes inside a running process: seconds and CPU of the call."""
    return StageResult(stage, r["work_seconds"], amount, unit, None, r["peak_rss_bytes"] / 1e6,
                       r["work_cpu_seconds"], output)


def _report(number: int, result: StageResult, detail: str = "") -> None:
    print(f"bench: [{number}/5] {result.stage}: {result.seconds:.1f} s, {result.rate_text}, peak RSS "
          f"{result.peak_rss_mb:,.0f} MB, CPU {result.cpu_seconds:.1f} s{detail}", flush=True)


def run_stages(month: Month, lake_root: Path) -> list[StageResult]:
    """Every stage in order on a fresh lake; fails as soon as a stage's counts do not reconcile."""
    from market_etl_devtools.mirror.server import MirrorServer

    shutil.rmtree(lake_root, ignore_errors=True)
    lake_root.mkdir(parents=True)
    archive_mb, csv_mb = month.zip_bytes / 1e6, month.csv_bytes / 1e6
    results = []

    with MirrorServer(month.mirror) as server:
        r = _stage_child("download", lake_root, server.base_url)
    _expect("downloaded sha256", r["sha256"], month.sha256)
    _expect("checksum verified", r["checksum_verified"], True)
    results.append(_process_stage("download", r, archive_mb, "MB/s of archive",
                                  f"{r['bytes'] / 1e6:,.1f} MB, sha256 verified", r["work_seconds"]))
    _report(1, results[-1])

    r = _stage_child("unzip", lake_root)
    _expect("unzipped rows", r["rows"], month.rows)
    _expect("unzipped bytes", r["bytes"], month.csv_bytes)
    results.append(_process_stage("unzip", r, csv_mb, "MB/s of CSV", f"{r['rows']:,} lines, {csv_mb:,.1f} MB",
                                  r["work_seconds"]))
    _report(2, results[-1], f" ({csv_mb / r['work_seconds']:,.0f} MB/s of CSV in the stage's own time)")

    for engine, name in (("engine", ETL_NAME), ("stage", SPARK_NAME), ("duckdb", BARE_NAMES[0]),
                         ("polars", BARE_NAMES[1])):
        r = run_engine(engine, lake_root, month.rows)  # checks rows written = source rows
        if engine == "stage":  # its staged version stays in the lake for the publish stage
            manifest_key = r["manifest_key"]
        engine_seconds = r["detail"].get("etl_s")
        results.append(_process_stage(name, r, month.rows, "rows/s", f"{r['rows_out']:,} rows written",
                                      engine_seconds))
        _report(3, results[-1], f" {r['detail']}" if r["detail"] else "")
    shutil.rmtree(lake_root / "duckdb-reference", ignore_errors=True)
    shutil.rmtree(lake_root / "polars-reference", ignore_errors=True)

    r = _stage_child("catalog", lake_root, manifest_key)
    _expect("rows published", r["rows"], month.rows)
    results.append(_call_stage("publish (one Iceberg commit)", r, None, None,
                               f"{r['files']} files committed in one transaction, snapshot {r['snapshot']}"))
    _report(4, results[-1])
    for dataset in ANALYTICS:
        r = _stage_child("analytics", lake_root, dataset)
        if dataset == "daily_trade_stats":
            _expect("daily_trade_stats rows (days of the month)", r["rows"], DAYS)
        results.append(_call_stage(f"analytics {dataset}", r, month.rows, "trades/s",
                                   f"{r['rows']:,} rows, {r['bytes'] / 1e6:,.2f} MB"))
        _report(4, results[-1])

    r = _stage_child("query", lake_root, QUERY_DATE)
    if not r["rows"] or not 0 < r["files_scanned"] < r["files_total"]:
        raise RuntimeError(f"bench: query {QUERY} on {QUERY_DATE}: {r['rows']} rows, {r['files_scanned']} of "
                           f"{r['files_total']} files: expected rows from that day's files only")
    results.append(_call_stage(f"query {QUERY} ({QUERY_DATE})", r, None, None,
                               f"{r['rows']:,} minutes over {r['trades']:,} trades; scanned {r['files_scanned']} "
                               f"of {r['files_total']} files, {r['bytes_scanned'] / 1e6:,.2f} MB"))
    _report(5, results[-1])
    return results


def _lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def _field(path: str, prefix: str, sep: str) -> str | None:
    return next((line.split(sep, 1)[1].strip().strip('"') for line in _lines(path) if line.startswith(prefix)), None)


def java_version() -> str:
    """The first line of `java -version` for the java PySpark starts (JAVA_HOME's, else the PATH's)."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else "java"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"not found ({err})"
    return (out.stderr or out.stdout).strip().splitlines()[0]


def describe_machine() -> dict[str, str]:
    mem_total = _field("/proc/meminfo", "MemTotal:", ":")
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("pyspark", "duckdb", "polars"))
    return {
        "CPU": _field("/proc/cpuinfo", "model name", ":") or platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "RAM": f"{int(mem_total.split()[0]) / 2**20:.1f} GiB" if mem_total else "unknown",
        "OS": f"{_field('/etc/os-release', 'PRETTY_NAME=', '=') or platform.system()}, kernel {platform.release()}",
        "Python": platform.python_version(),
        "Java": java_version(),
        "engines": versions,
    }


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.2f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:,.1f} MB"


def _count(n: float) -> str:
    return f"{n / 1e6:,.1f}M" if n >= 1e6 else f"{n:,.0f}"


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def _verdict(met: bool, judged: bool) -> str:
    return ("yes" if met else "**no**") if judged else "not judged (targets are for a 30M-row month)"


def render_results(month: Month, results: list[StageResult], machine: dict[str, str], load_before, load_after,
                   started: dt.datetime) -> str:
    """benchmarks/results.md: the machine, the input, the stage table, the comparisons."""
    by_stage = {r.stage: r for r in results}
    etl, spark = by_stage[ETL_NAME], by_stage[SPARK_NAME]
    bare = [by_stage[name] for name in BARE_NAMES]
    fastest = max(bare, key=lambda r: r.rate)
    share = etl.rate / fastest.rate
    unzip = by_stage["unzip"]
    query = next(r for r in results if r.stage.startswith("query"))
    pipeline = [r for r in results if r is not spark and r not in bare]
    total = sum(r.seconds for r in pipeline)
    cores = os.cpu_count() or 1
    judged = month.rows >= 0.99 * DEFAULT_ROWS
    unzip_work_rate = month.csv_bytes / 1e6 / unzip.work_seconds
    unzip_rss_mib = unzip.peak_rss_mb * 1e6 / 2**20
    rows_per_hour = _count(month.rows / total * 3600)
    generation = (f"generated in {month.generation_seconds:,.1f} s when first made (cached since)" if month.cached
                  else f"generated in {month.generation_seconds:,.1f} s")
    lines = [
        "# Pipeline benchmark",
        "",
        "Written by `make bench` (`market-etl bench pipeline --rows N`, devtools/market_etl_devtools/bench_pipeline.py: its docstring "
        "says how each stage runs and what each figure covers).",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        *[f"- {name}: {value}" for name, value in machine.items()],
        f"- Load average (1 / 5 / 15 min): {_load(load_before)} before, {_load(load_after)} after",
        f"- Input: {PARTITION.symbol} {PARTITION.month}, {month.rows:,} rows, {_size(month.csv_bytes)} of CSV, "
        f"{_size(month.zip_bytes)} zipped ({generation}; not a stage)",
        "",
        "## Stages",
        "",
        "| stage | seconds | rate | work s | peak RSS MB | CPU s | output |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r.stage} | {r.seconds:,.2f} | {r.rate_text} | "
          f"{'-' if r.work_seconds is None else f'{r.work_seconds:,.2f}'} | {r.peak_rss_mb:,.0f} | "
          f"{r.cpu_seconds:,.1f} | {r.output} |" for r in results],
        "",
        "Download, unzip and the ETL run as a process each in production: their seconds and CPU seconds cover the "
        "whole process (interpreter, imports, JVM start; the rate is on those seconds), \"work s\" is the stage's own "
        "timer (for the ETL: Spark time after the JVM started). Catalog, analytics and the query are calls inside a "
        "running process (the Dagster run, `market-etl query`): seconds and CPU seconds are the call's; analytics "
        "rates are trades read per second. Peak RSS is each child's VmHWM (MB = 10^6 bytes), the JVM's added for "
        "Spark; for the SQL steps it includes Dagster's imports, as in the run process.",
        "",
        f"Pipeline total (download to query with the default engine; the Spark engine and the bare references "
        f"excluded): {total:,.1f} s, {rows_per_hour} rows/hour; at that rate the original design's "
        f"{DESIGN_ROWS / 1e6:,.0f}M rows take {DESIGN_ROWS / month.rows * total / 60:,.1f} min on this machine "
        f"({cores} cores) vs ~{DESIGN_SECONDS / 60:.0f} min on {DESIGN_VCPUS} vCPU.",
        "",
        f"ETL stage (DuckDB engine) vs the fastest bare engine ({fastest.stage}), same CSV, same run: "
        f"{etl.rate:,.0f} vs {fastest.rate:,.0f} rows/s end to end = {share:.2f} (the bare engines have no "
        f"quarantine, id checks, exact-text validation or staged manifest). Spark engine: {spark.rate:,.0f} rows/s.",
        "",
        "## Against the original design and the targets",
        "",
        "| | original design (AWS) | this run |",
        "|---|---|---|",
        f"| ETL | {DESIGN_ROWS:,} rows in ~18 min on 10 Glue G.1X workers ({DESIGN_VCPUS} vCPU): "
        f"~{DESIGN_ROWS / DESIGN_SECONDS / 1e3:,.0f}k rows/s, "
        f"~{DESIGN_ROWS / DESIGN_SECONDS / DESIGN_VCPUS / 1e3:.1f}k rows/s per vCPU | "
        f"{etl.rate:,.0f} rows/s on {cores} cores, {etl.rate / cores:,.0f} rows/s per core |",
        f"| whole pipeline | ~{_count(DESIGN_ROWS_PER_HOUR)} rows/hour | {rows_per_hour} rows/hour |",
        f"| query with partition filters | Athena: 2-3 s | DuckDB: {query.seconds:,.2f} s ({query.output}) |",
        "",
        "| target | this run | met |",
        "|---|---|---|",
        f"| unzip: >= {UNZIP_TARGET_MB_S} MB/s of CSV to local disk on one core (issue 3; previously measured "
        f"~{UNZIP_PREVIOUS_MB_S} MB/s) | {unzip_work_rate:,.0f} MB/s in the stage's own time, {unzip.rate:,.0f} "
        f"counting process start | {_verdict(unzip_work_rate >= UNZIP_TARGET_MB_S, judged)} |",
        f"| unzip: peak RSS < {UNZIP_TARGET_RSS_MIB} MiB (issue 3) | {unzip_rss_mib:,.1f} MiB | "
        f"{_verdict(unzip_rss_mib < UNZIP_TARGET_RSS_MIB, judged)} |",
        f"| ETL, default engine: >= {ETL_TARGET_ROWS_S / 1e6:,.1f}M rows/s end to end, process start included "
        f"(issue 13) | {etl.rate:,.0f} rows/s | {_verdict(etl.rate >= ETL_TARGET_ROWS_S, judged)} |",
        f"| ETL, default engine: >= {ETL_TARGET_SHARE_OF_BARE} of the fastest bare engine (issue 13) | {share:.2f} | "
        f"{_verdict(share >= ETL_TARGET_SHARE_OF_BARE, judged)} |",
        f"| ETL, default engine: peak RSS <= {ETL_TARGET_RSS_MB / 1e3:.0f} GB (issue 13) | {etl.peak_rss_mb:,.0f} MB | "
        f"{_verdict(etl.peak_rss_mb <= ETL_TARGET_RSS_MB, judged)} |",
        f"| ETL, Spark engine: >= {SPARK_TARGET_ROWS_S / 1e3:,.0f}k rows/s end to end, JVM start included (issue 13) "
        f"| {spark.rate:,.0f} rows/s | {_verdict(spark.rate >= SPARK_TARGET_ROWS_S, judged)} |",
        "",
    ]
    return "\n".join(lines)


def bench_pipeline(rows: int = DEFAULT_ROWS, workdir: str | os.PathLike = "benchmarks/work",
                   output: str | os.PathLike = "benchmarks/results.md", *,
                   keep_lake: bool = False) -> list[StageResult]:
    """Generate (or reuse) the month, run every stage, write `output`; returns the stage rows."""
    workdir, output = Path(workdir).resolve(), Path(output).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    load_before = os.getloadavg()
    machine = describe_machine()
    print(f"bench: pipeline on {PARTITION}, ~{rows:,} rows, {machine['cores']} cores, load average "
          f"{_load(load_before)}", flush=True)
    clock = time.perf_counter()
    month = generated_month(rows, workdir)
    print(f"bench: [0/5] source: {month.rows:,} rows, {_size(month.csv_bytes)} of CSV, "
          f"{_size(month.zip_bytes)} zipped, "
          + (f"cached ({month.generation_seconds:,.1f} s to generate when made)" if month.cached
             else f"generated in {month.generation_seconds:,.1f} s"), flush=True)
    lake_root = workdir / "pipeline-lake"
    results = run_stages(month, lake_root)
    load_after = os.getloadavg()
    report = render_results(month, results, machine, load_before, load_after, started)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    if not keep_lake:
        shutil.rmtree(lake_root, ignore_errors=True)
    table = report[report.index("| stage |"):report.index("\n\n", report.index("| stage |"))]
    print(f"{table}\nbench: done in {time.perf_counter() - clock:,.1f} s, load average {_load(load_after)}; "
          f"wrote {output}", flush=True)
    return results


def register(sub: argparse._SubParsersAction) -> None:
    """`market-etl bench pipeline` (sub is the `bench` command's subparsers)."""
    parser = sub.add_parser("pipeline", help="the whole pipeline stage by stage on a generated month, written to "
                                             "benchmarks/results.md (what `make bench` runs)")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="trades in the generated month (default 30M)")
    parser.add_argument("--workdir", default="benchmarks/work", help="where the month is cached and the lake built")
    parser.add_argument("--output", default="benchmarks/results.md", help="the results file to write")
    parser.add_argument("--keep-lake", action="store_true",
                        help="leave the lake in WORKDIR/pipeline-lake (to query it) instead of removing it")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    bench_pipeline(args.rows, args.workdir, args.output, keep_lake=args.keep_lake)
    return 0


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], Path(sys.argv[3]), sys.argv[4] if len(sys.argv) == 5 else None)))
    else:
        sys.exit("usage: python -m market_etl_devtools.bench_pipeline --child STAGE LAKE_ROOT [ARG] "
                 "(use `market-etl bench pipeline`)")
