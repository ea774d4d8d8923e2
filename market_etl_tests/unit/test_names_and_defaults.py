"""Names and defaults are declared once: asset keys and pools in defs/keys.py, defaults in core/defaults.py.

A second declaration drifts from the first without anyone noticing; these tests make it visible.
"""
from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path

import dagster as dg

from market_etl.core import defaults
from market_etl.core.download import RetryPolicy
from market_etl.defs import keys
from market_etl.definitions import build_definitions
from market_etl.resources import BinanceSource
from market_etl.resources.stages import glue_job_names
from market_etl.settings import Settings
from market_etl.stages import download

PACKAGE = Path(keys.__file__).resolve().parents[1]
README = PACKAGE.parent / "README.md"


def _asset_key_constructions(path: Path) -> list[int]:
    """Lines where `AssetKey(...)` is called in `path`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name == "AssetKey":
                lines.append(node.lineno)
    return lines


def test_asset_keys_are_constructed_only_in_defs_keys():
    elsewhere = {str(p.relative_to(PACKAGE)): lines for p in PACKAGE.rglob("*.py")
                 if p != Path(keys.__file__).resolve() and (lines := _asset_key_constructions(p))}
    assert not elsewhere, f"asset keys declared outside market_etl/defs/keys.py: {elsewhere}"


def test_every_asset_and_pool_of_the_code_location_is_declared_in_defs_keys(tmp_path):
    declared_keys = {v for v in vars(keys).values() if isinstance(v, dg.AssetKey)}
    declared_pools = {v for k, v in vars(keys).items() if k.endswith("_POOL")}
    graph = build_definitions(Settings.from_env({"MARKET_ETL_LAKE": str(tmp_path / "lake")})).resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) == declared_keys
    pools = set().union(*(graph.get(key).pools or () for key in graph.get_all_asset_keys()))
    assert pools == declared_pools


def test_settings_defaults_are_core_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from_env = Settings.from_env({})
    assert from_env == Settings(lake=str((tmp_path / defaults.LAKE).resolve()))
    declared = {name.lower(): value for name, value in vars(defaults).items() if name.isupper()}
    renamed = {"base_url": "binance_base_url", "listing_url": "binance_listing_url"}
    for field in fields(Settings):
        name = renamed.get(field.name, field.name)
        if name in declared:
            assert field.default == declared[name], field.name


def test_an_empty_variable_is_an_error_not_the_default():
    for name in ("MARKET_ETL_HTTP_TIMEOUT", "MARKET_ETL_HTTP_ATTEMPTS", "MARKET_ETL_FIRST_MONTH", "MARKET_ETL_SYMBOLS"):
        try:
            Settings.from_env({name: ""})
        except ValueError:
            continue
        raise AssertionError(f"{name}='' was accepted")


def test_resources_stage_arguments_and_core_read_the_same_defaults():
    source = BinanceSource()
    assert (source.base_url, source.timeout_seconds, source.attempts, source.backoff_seconds) == (
        defaults.BINANCE_BASE_URL, defaults.HTTP_TIMEOUT_SECONDS, defaults.HTTP_ATTEMPTS, defaults.RETRY_BACKOFF_SECONDS)
    policy = RetryPolicy()
    assert (policy.attempts, policy.backoff_seconds) == (defaults.HTTP_ATTEMPTS, defaults.RETRY_BACKOFF_SECONDS)
    assert glue_job_names()["etl"] == f"{defaults.GLUE_JOB_PREFIX}etl"
    stage_defaults = {a.dest: a.default for a in _download_parser()._actions}
    assert (stage_defaults["timeout"], stage_defaults["attempts"], stage_defaults["backoff"]) == (
        defaults.HTTP_TIMEOUT_SECONDS, defaults.HTTP_ATTEMPTS, defaults.RETRY_BACKOFF_SECONDS)


def _download_parser():
    """The download stage's parser, as its main() builds it (captured, not run)."""
    import argparse

    captured = {}
    original = argparse.ArgumentParser.parse_known_args

    def capture(self, *args, **kwargs):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_known_args = capture
    try:
        download.main([])
    except SystemExit:
        pass
    finally:
        argparse.ArgumentParser.parse_known_args = original
    return captured["parser"]


def test_the_readme_configuration_table_shows_the_declared_defaults():
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", section, re.MULTILINE))
    expected = {
        "MARKET_ETL_RUNTIME": defaults.RUNTIME,
        "MARKET_ETL_LAKE": defaults.LAKE,
        "BINANCE_BASE_URL": defaults.BINANCE_BASE_URL,
        "BINANCE_LISTING_URL": defaults.BINANCE_LISTING_URL,
        "MARKET_ETL_SYMBOLS": ",".join(defaults.SYMBOLS),
        "MARKET_ETL_FIRST_MONTH": defaults.FIRST_MONTH,
        "MARKET_ETL_DOWNLOAD_CONCURRENCY": str(defaults.DOWNLOAD_CONCURRENCY),
        "MARKET_ETL_HTTP_TIMEOUT": f"{defaults.HTTP_TIMEOUT_SECONDS:g}",
        "MARKET_ETL_HTTP_ATTEMPTS": str(defaults.HTTP_ATTEMPTS),
        "MARKET_ETL_RETRY_BACKOFF": f"{defaults.RETRY_BACKOFF_SECONDS:.1f}",
        "MARKET_ETL_SENSOR_INTERVAL": str(defaults.SENSOR_INTERVAL_SECONDS),
        "MARKET_ETL_REJECT_TOLERANCE": f"{defaults.REJECT_TOLERANCE:g}",
    }
    shown = {name: table.get(name, "").strip().strip("`") for name in expected}
    assert shown == expected
