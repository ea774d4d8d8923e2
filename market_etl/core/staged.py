"""A staged version: what one ETL run wrote for a partition and what its audit found (write-audit-publish).

The ETL stage (any engine) writes the partition's data files under keys unique to its run
(`keys.staged_trades_file_key`, `keys.staged_rejected_file_key`), then this manifest at
`keys.staged_manifest_key`. Nothing is visible to readers yet. The publish step reads the manifest,
refuses it when a blocking check failed or a newer source was already published, and otherwise commits
exactly the listed files to the table in one transaction.

Files hold every table column, the partition columns (year, month, day, symbol) included and constant
per file, so a catalog can take each file's partition from its own statistics.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

from market_etl.core.keys import TradePartition

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class StagedFile:
    key: str  # relative to the lake root
    rows: int
    bytes: int


@dataclass(frozen=True)
class StagedCheck:
    name: str
    passed: bool
    blocking: bool
    severity: str = "ERROR"  # as reported to Dagster: ERROR or WARN


@dataclass(frozen=True)
class StagedVersion:
    partition: TradePartition
    run_id: str  # keys.new_run_id(): names the files
    source_sha256: str | None  # the raw archive this version was built from
    transform_version: str
    engine: str
    trades_files: tuple[StagedFile, ...]
    rejected_files: tuple[StagedFile, ...]
    rows_in: int
    rows_written: int
    rows_rejected: int
    duplicates_removed: int
    checks: tuple[StagedCheck, ...]
    dagster_run_id: str | None = None
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def failed_blocking_checks(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.checks if c.blocking and not c.passed)

    @property
    def publishable(self) -> bool:
        return not self.failed_blocking_checks

    def to_json(self) -> str:
        body = asdict(self)
        body["partition"] = {"symbol": self.partition.symbol, "month": self.partition.month}
        return json.dumps({"manifest_version": MANIFEST_VERSION, **body}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "StagedVersion":
        body = json.loads(text)
        version = body.pop("manifest_version", None)
        if version != MANIFEST_VERSION:
            raise ValueError(f"staged manifest version {version!r}: this code reads version {MANIFEST_VERSION}")
        body["partition"] = TradePartition(**body["partition"])
        body["trades_files"] = tuple(StagedFile(**f) for f in body["trades_files"])
        body["rejected_files"] = tuple(StagedFile(**f) for f in body["rejected_files"])
        body["checks"] = tuple(StagedCheck(**c) for c in body["checks"])
        return cls(**body)
