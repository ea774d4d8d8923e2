"""Tooling around market-etl that never ships to Glue: the Binance-format mirror, the benchmarks, the demo.

Installed beside the runtime package by `make setup` (`pip install -e devtools`); the `market-etl` command
offers its subcommands (`mirror`, `bench`, `demo`) when it is installed.
"""
