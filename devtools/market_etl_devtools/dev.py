"""`make dev` (`market-etl dev`): `dagster dev`, kept to the demo's mirror and lake after `make demo`.

`make demo` records what it ran on in `data/demo.env` (lake, symbols, first month, mirror directory).
When that file exists, `make dev` serves the same mirror on loopback for as long as Dagster runs and
starts Dagster with BINANCE_BASE_URL and BINANCE_LISTING_URL pointing at it, so materialising a demo
month in the UI never starts a multi-GB download from the real archive. It says so when it starts.
The real archive is an explicit choice: `make dev REAL_ARCHIVE=1` (`market-etl dev --real-archive`), or
remove data/demo.env. A variable already set in the environment wins over the demo's value.

Dagster reads this configuration once, when it starts: reloading the code location in the UI does not
re-read the shell's environment. Change a variable, then restart `make dev`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

DEMO_ENV = Path("data/demo.env")
#: What the demo's state file records: the settings Dagster must get to see the demo's lake and partitions.
DEMO_KEYS = ("MARKET_ETL_LAKE", "MARKET_ETL_SYMBOLS", "MARKET_ETL_FIRST_MONTH", "MARKET_ETL_DEMO_MIRROR")


def write_demo_env(values: dict[str, str], path: Path = DEMO_ENV) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `make demo`: `make dev` reads it to keep to the demo's mirror and lake.",
             "# `make dev REAL_ARCHIVE=1` ignores it; delete it to forget the demo."]
    path.write_text("\n".join(lines + [f"{k}={values[k]}" for k in DEMO_KEYS if k in values]) + "\n")
    return path


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def dev_environment(environ: dict[str, str], demo: dict[str, str] | None, mirror_url: str | None) -> dict[str, str]:
    """The environment `dagster dev` starts with: the demo's settings and mirror under what is already set."""
    env = dict(environ)
    if demo is None:
        return env
    for key in DEMO_KEYS:
        if key in demo and key != "MARKET_ETL_DEMO_MIRROR":
            env.setdefault(key, demo[key])
    if mirror_url:
        env.setdefault("BINANCE_BASE_URL", mirror_url)
        env.setdefault("BINANCE_LISTING_URL", mirror_url)
    return env


def run_dev(real_archive: bool = False, host: str = "127.0.0.1", port: int = 3000) -> int:
    from market_etl_devtools.mirror.server import MirrorServer

    demo = read_env_file(DEMO_ENV) if DEMO_ENV.exists() and not real_archive else None
    with ExitStack() as stack:
        mirror_url = None
        if demo is not None:
            mirror_dir = Path(demo.get("MARKET_ETL_DEMO_MIRROR", "data/mirror"))
            if not mirror_dir.is_dir():
                print(f"make dev: {DEMO_ENV} names the mirror {mirror_dir}, which is gone: run `make demo` again, "
                      f"or `make dev REAL_ARCHIVE=1` for the real archive", file=sys.stderr)
                return 2
            mirror_url = stack.enter_context(MirrorServer(mirror_dir)).base_url
        env = dev_environment(dict(os.environ), demo, mirror_url)
        if demo is not None:
            print(f"make dev: DEMO MODE (from {DEMO_ENV}): archive {env['BINANCE_BASE_URL']} (the demo's mirror "
                  f"{demo.get('MARKET_ETL_DEMO_MIRROR')}), lake {env.get('MARKET_ETL_LAKE')}, symbols "
                  f"{env.get('MARKET_ETL_SYMBOLS')} from {env.get('MARKET_ETL_FIRST_MONTH')}. "
                  f"The real archive: `make dev REAL_ARCHIVE=1`.", flush=True)
        else:
            print(f"make dev: archive {env.get('BINANCE_BASE_URL', 'https://data.binance.vision')} "
                  f"(materialising a month downloads it), lake {env.get('MARKET_ETL_LAKE', './data/lake')}",
                  flush=True)
        subprocess.run([sys.executable, "-m", "market_etl.cli", "init-home"], env=env, check=True)
        dagster = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
                                    "-h", host, "-p", str(port)], env=env)
        try:
            return dagster.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached dagster dev too (same terminal process group): let it shut down its processes.
            dagster.send_signal(signal.SIGINT)
            return dagster.wait()
