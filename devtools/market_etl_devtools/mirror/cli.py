"""`market-etl mirror generate|serve`: build a Binance-format mirror and serve it on loopback.

The project CLI calls `register(subparsers)` and then `args.func(args)`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from market_etl.cli import DEVTOOLS_COMMANDS
from market_etl_devtools.mirror.generate import DEFAULT_COMPRESSLEVEL, generate_month, months_range
from market_etl_devtools.mirror.server import MirrorServer


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `mirror` command and its `generate` and `serve` subcommands."""
    mirror = subparsers.add_parser("mirror", help=DEVTOOLS_COMMANDS["mirror"])
    commands = mirror.add_subparsers(dest="mirror_command", required=True)

    generate = commands.add_parser("generate", help="write deterministic monthly spot trade zips + CHECKSUMs")
    generate.add_argument("--out", type=Path, required=True, help="mirror root (data/spot/... is created inside)")
    generate.add_argument("--symbols", type=_symbols, required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    generate.add_argument("--months", type=months_range, required=True, help="YYYY-MM or YYYY-MM:YYYY-MM")
    generate.add_argument("--trades-per-day", type=int, required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument(
        "--compresslevel", type=int, default=DEFAULT_COMPRESSLEVEL, choices=range(4), help="isal deflate level"
    )
    generate.set_defaults(func=run_generate)

    serve = commands.add_parser("serve", help="serve a mirror over HTTP until SIGINT/SIGTERM")
    serve.add_argument("root", type=Path)
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    serve.add_argument("--host", default="127.0.0.1")
    serve.set_defaults(func=run_serve)


def run_generate(args: argparse.Namespace) -> int:
    """Generate every (symbol, month) file, printing size and speed per file and in total."""
    total_rows, started = 0, time.perf_counter()
    for symbol in args.symbols:
        for month in args.months:
            file_started = time.perf_counter()
            written = generate_month(
                args.out, symbol, month, args.trades_per_day, seed=args.seed, compresslevel=args.compresslevel
            )
            seconds = time.perf_counter() - file_started
            total_rows += written.rows
            print(
                f"{written.zip_path} rows={written.rows} csv_bytes={written.csv_bytes} "
                f"zip_bytes={written.zip_path.stat().st_size} seconds={seconds:.2f} "
                f"rows_per_s={written.rows / seconds:,.0f}",
                flush=True,
            )
    seconds = time.perf_counter() - started
    print(f"total files={len(args.symbols) * len(args.months)} rows={total_rows} seconds={seconds:.2f} "
          f"rows_per_s={total_rows / seconds:,.0f}", flush=True)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the first stdout line is the base URL alone, for scripts to read."""
    if not args.root.is_dir():
        print(f"mirror root {args.root} is not a directory", file=sys.stderr)
        return 2
    # Block the stop signals before the server threads exist (they inherit the
    # mask), then wait for one synchronously: no handler races with serving.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        with MirrorServer(args.root, host=args.host, port=args.port) as server:
            print(server.base_url, flush=True)
            print(f"serving {args.root.resolve()} at {server.base_url}; SIGINT/SIGTERM stops", file=sys.stderr)
            received = signal.sigwait(stop_signals)
        print(f"stopped on {signal.Signals(received).name}", file=sys.stderr)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    return 0


def _symbols(text: str) -> list[str]:
    symbols = [symbol.strip() for symbol in text.split(",") if symbol.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("at least one symbol is required")
    return symbols
