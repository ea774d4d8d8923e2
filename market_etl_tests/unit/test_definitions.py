"""A snapshot of the code location: a renamed asset, check or sensor is a visible diff.

Refresh after an intended change with `MARKET_ETL_UPDATE_SNAPSHOTS=1 make test` and review the diff.
"""
import json
import os
from pathlib import Path

import dagster as dg

from market_etl.definitions import build_definitions
from market_etl.settings import Settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": None if partitions is None else sorted(
                getattr(partitions, "partition_dimension_names", None) or [type(partitions).__name__]),
            "checks": sorted(c.name for c in node.check_keys),
            "group": node.group_name,
            "has_description": bool(node.description),
        }
    return {
        "assets": assets,
        "sensors": sorted(s.name for s in defs.sensors or []),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "resources": sorted((defs.resources or {}).keys()),
    }


def test_definitions_snapshot(tmp_path):
    settings = Settings.from_env({"MARKET_ETL_LAKE": str(tmp_path / "lake")})
    actual = describe(build_definitions(settings))
    if os.environ.get("MARKET_ETL_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert actual == json.loads(SNAPSHOT.read_text())


def test_every_asset_is_documented(tmp_path):
    settings = Settings.from_env({"MARKET_ETL_LAKE": str(tmp_path / "lake")})
    for key, info in describe(build_definitions(settings))["assets"].items():
        assert info["has_description"], f"{key} has no description for the UI"


def test_partitions_follow_configuration(tmp_path):
    """Adding a symbol is configuration: the partitions follow MARKET_ETL_SYMBOLS and the first month."""
    settings = Settings.from_env({"MARKET_ETL_LAKE": str(tmp_path / "lake"), "MARKET_ETL_SYMBOLS": "SOLUSDT,XRPUSDT",
                                  "MARKET_ETL_FIRST_MONTH": "2024-11"})
    defs = build_definitions(settings)
    node = defs.resolve_asset_graph().get(dg.AssetKey(["raw", "trades_zip"]))
    keys = node.partitions_def.get_partition_keys()
    assert keys[:2] == ["2024-11-01|SOLUSDT", "2024-11-01|XRPUSDT"]
    assert all(k.split("|")[1] in ("SOLUSDT", "XRPUSDT") for k in keys)
