"""`market-etl bench unzip`: MB/s and peak RSS of the unzip stage, side by side with stdlib zipfile.

The archive is a generated Binance-format month (`market_etl_devtools.mirror.generate`) of the requested size,
recompressed at zlib's default level, as `zip`, Python's zipfile and Java's ZipOutputStream write it
(`--fast-archive` keeps the mirror's own ISA-L level-1 stream: quicker to make, slower to inflate).
Archives are cached in the work directory.

Every method runs in a fresh child process because peak RSS is a per-process high-water mark: each
child reports its own (VmHWM, see `market_etl.core.memory`), interpreter and imports included. Rates
are MB (10^6 bytes) of CSV per second of the child's own work (interpreter start-up excluded), best of
`--repeat` runs, with the rate per CPU-second beside it since other processes may share the machine.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable, Sequence

from market_etl.core.binance import csv_member_name
from market_etl.core.keys import TradePartition, Zone, lake_key
from market_etl.core.memory import peak_rss_bytes

PARTITION = TradePartition("BTCUSDT", "2025-07")
CSV_BYTES_PER_ROW = 77  # the mirror's BTCUSDT rows with microsecond times, as measured
DAYS = 31
CHUNK = 1024 * 1024

METHODS = {
    "stage": "unzip stage, ISA-L -> local lake on disk (temp file + rename)",
    "stage-null": "unzip stage core, ISA-L -> /dev/null",
    "zipfile": "stdlib zipfile (zlib) -> file on disk",
    "zipfile-null": "stdlib zipfile (zlib) -> /dev/null",
}


def realistic_archive(size_gb: float, workdir: Path, *, fast: bool = False) -> Path:
    """A one-member BTCUSDT-2025-07 archive holding about `size_gb` GB of CSV (cached in `workdir`)."""
    from market_etl_devtools.mirror.generate import generate_month

    trades_per_day = max(1, round(size_gb * 1e9 / CSV_BYTES_PER_ROW / DAYS))
    mirror = workdir / f"mirror-{trades_per_day}"
    name = csv_member_name(PARTITION)
    generated = mirror / "data/spot/monthly/trades" / PARTITION.symbol / name.replace(".csv", ".zip")
    if not generated.exists():
        print(f"bench: generating {trades_per_day * DAYS:,} trades (~{size_gb:g} GB of CSV)", flush=True)
        generate_month(mirror, PARTITION.symbol, PARTITION.month, trades_per_day, seed=1)
    if fast:
        return generated
    recompressed = mirror / f"zlib6-{generated.name}"
    if not recompressed.exists():
        print("bench: recompressing at zlib's default level (6): a few minutes for a multi-GB member", flush=True)
        part = recompressed.with_name(recompressed.name + ".part")
        with zipfile.ZipFile(generated) as source, source.open(name) as member, \
                zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as target, \
                target.open(name, "w", force_zip64=True) as out:
            shutil.copyfileobj(member, out, CHUNK)
        os.replace(part, recompressed)
    return recompressed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(4 * CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _stage_lake(archive: Path, workdir: Path):
    """A local lake whose raw zone holds `archive` (hard-linked) with its sha256 sidecar."""
    from market_etl.lake import LocalLake

    lake = LocalLake(workdir / "lake")
    raw = lake.path(lake_key(Zone.RAW, PARTITION))
    if not raw.exists() or not os.path.samefile(raw, archive):
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.unlink(missing_ok=True)
        os.link(archive, raw)
        lake.write_meta(lake_key(Zone.RAW, PARTITION), {"sha256": _sha256(archive)})
    return lake


def _method(method: str, archive: Path, workdir: Path) -> Callable[[], int]:
    """The work of one method (imports done, nothing started); returns the CSV bytes it wrote when called."""
    name = csv_member_name(PARTITION)
    if method == "stage":
        import market_etl.stages.unzip  # noqa: F401  the stage process's imports, Pipes included
        from market_etl.core.memory import reuse_freed_buffers
        from market_etl.core.unzip import unzip_partition
        from market_etl.lake import LocalLake

        lake = LocalLake(workdir / "lake")
        reuse_freed_buffers()  # as the stage's entry point does

        def stage() -> int:
            # The stage's work without its Pipes session: outside Dagster, dagster_pipes substitutes a
            # MagicMock that alone adds ~7 MiB of RSS the real stage never has.
            return unzip_partition(PARTITION, lake).uncompressed_bytes
        return stage
    if method == "stage-null":
        from market_etl.core.memory import reuse_freed_buffers
        from market_etl.core.unzip import locate_member, stream_member

        reuse_freed_buffers()  # as the stage's entry point does

        def stage_core() -> int:
            with archive.open("rb") as fp, open(os.devnull, "wb") as sink:
                member = locate_member(fp, archive.stat().st_size, name)
                return stream_member(fp, member, sink.write).uncompressed_bytes
        return stage_core
    target = os.devnull if method == "zipfile-null" else workdir / "zipfile-out.csv"

    def reference() -> int:
        """The stdlib way: ZipFile.open() and 1 MiB reads (zlib inflate, CRC checked by zipfile)."""
        written = 0
        with zipfile.ZipFile(archive) as zf, zf.open(name) as member, open(target, "wb") as out:
            for block in iter(lambda: member.read(CHUNK), b""):
                out.write(block)
                written += len(block)
        return written
    return reference


def _child(method: str, archive: Path, workdir: Path) -> dict:
    """Run one method inside the child process; report bytes and seconds to the parent."""
    work = _method(method, archive, workdir)
    started, cpu = time.perf_counter(), time.process_time()
    written = work()
    return {"bytes": written, "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
            "peak_rss_bytes": peak_rss_bytes()}


def _clean_outputs(workdir: Path) -> None:
    (workdir / "zipfile-out.csv").unlink(missing_ok=True)
    shutil.rmtree(workdir / "lake" / "raw_unzipped", ignore_errors=True)


def bench_unzip(size_gb: float, workdir: str | os.PathLike, *, repeat: int = 2, fast_archive: bool = False,
                methods: Sequence[str] = tuple(METHODS)) -> list[dict]:
    """Measure each method `repeat` times (interleaved) on a ~`size_gb` GB member; print and return the rows."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    archive = realistic_archive(size_gb, workdir, fast=fast_archive)
    _stage_lake(archive, workdir)
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(csv_member_name(PARTITION))
    print(f"bench: {archive.name}: {info.compress_size / 1e6:,.0f} MB -> {info.file_size / 1e6:,.0f} MB of CSV "
          f"({info.file_size / info.compress_size:.2f}:1), {repeat} run(s) per method, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(repeat):
        for method in methods:
            _clean_outputs(workdir)
            child = subprocess.run([sys.executable, "-m", "market_etl_devtools.bench_unzip", "--child", method, str(archive),
                                    str(workdir)], stdout=subprocess.PIPE, text=True, check=True)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            if result["bytes"] != info.file_size:
                raise RuntimeError(f"bench method {method} wrote {result['bytes']} bytes, expected {info.file_size}")
            runs[method].append(result)
    _clean_outputs(workdir)
    rows = []
    for method, results in runs.items():
        rows.append({
            "method": method,
            "what": METHODS[method],
            "mb_per_s": round(info.file_size / 1e6 / min(r["seconds"] for r in results)),
            "mb_per_cpu_s": round(info.file_size / 1e6 / min(r["cpu_seconds"] for r in results)),
            "peak_rss_mib": round(max(r["peak_rss_bytes"] for r in results) / 2**20, 1),
        })
    print("| method | MB/s of CSV | MB per CPU-second | peak RSS (MiB) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['what']} | {row['mb_per_s']} | {row['mb_per_cpu_s']} | {row['peak_rss_mib']} |")
    print(f"bench: load average at the end {os.getloadavg()[0]:.1f}")
    return rows


def register(sub: argparse._SubParsersAction) -> None:
    """`market-etl bench unzip` (sub is the `bench` command's subparsers)."""
    unzip = sub.add_parser("unzip", help="unzip stage MB/s and peak RSS, side by side with stdlib zipfile")
    unzip.add_argument("--size-gb", type=float, default=2.3, help="GB of CSV in the generated member")
    unzip.add_argument("--workdir", default="benchmarks/work", help="where archives are cached and outputs written")
    unzip.add_argument("--repeat", type=int, default=2, help="runs per method; the best one is reported")
    unzip.add_argument("--fast-archive", action="store_true",
                       help="use the mirror's ISA-L level-1 archive as is (no zlib recompression)")
    unzip.set_defaults(func=_run_unzip)


def _run_unzip(args: argparse.Namespace) -> int:
    bench_unzip(args.size_gb, args.workdir, repeat=args.repeat, fast_archive=args.fast_archive)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))))
    else:
        sys.exit("usage: python -m market_etl_devtools.bench_unzip --child METHOD ARCHIVE WORKDIR (use `market-etl bench unzip`)")
