"""Metadata as a person reads it in the Dagster UI: markdown tables, table schemas, per-day counts.

Pure: no Dagster import. Values are built here and travel through Pipes (`pipes_value` gives the
`{"type", "raw_value"}` form the orchestration side turns into Dagster's markdown, table and
table-schema metadata values); the Dagster definitions turn the same declarations into definition metadata.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from market_etl.core.keys import TradePartition

#: Dagster's standard metadata keys (the UI shows them in their own places: row count, columns, table name, URI).
ROW_COUNT = "dagster/row_count"
COLUMN_SCHEMA = "dagster/column_schema"
TABLE_NAME = "dagster/table_name"
URI = "dagster/uri"


class Markdown(str):
    """Text the UI renders as markdown, not as a plain string."""

    def pipes_value(self) -> dict:
        return {"type": "md", "raw_value": str(self)}


@dataclass(frozen=True)
class Url:
    url: str

    def pipes_value(self) -> dict:
        return {"type": "url", "raw_value": self.url}


@dataclass(frozen=True)
class ColumnSchema:
    """A table's columns (name, SQL type), as `dagster/column_schema`."""

    columns: tuple[tuple[str, str], ...]

    def pipes_value(self) -> dict:
        return {"type": "table_schema",
                "raw_value": {"columns": [{"name": name, "type": sql_type} for name, sql_type in self.columns]}}


@dataclass(frozen=True)
class Table:
    """A small table of records (a table metadata value): columns (name, type) and rows in that order."""

    columns: tuple[tuple[str, str], ...]
    rows: tuple[tuple[Any, ...], ...]

    def pipes_value(self) -> dict:
        names = [name for name, _ in self.columns]
        return {"type": "table", "raw_value": {
            "schema": [{"name": name, "type": sql_type} for name, sql_type in self.columns],
            "records": [dict(zip(names, row)) for row in self.rows],
        }}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def share(part: int, whole: int) -> str:
    """A fraction of rows as a person reads it: 3 of 6,000 is 0.05%, never rounded to 0% when not zero."""
    if not whole or not part:
        return "0%"
    percent = 100 * part / whole
    return f"{percent:.2g}%" if percent < 1 else f"{percent:.1f}%"


def code_block(lines: Sequence[str]) -> str:
    return "```\n" + "\n".join(line.replace("```", "'''") for line in lines) + "\n```"


def days_table(partition: TradePartition, rows_by_day: Mapping[int, int]) -> Table:
    """Rows per calendar day of the month, every day listed: a missing day shows as 0 rows."""
    year, month = int(partition.month[:4]), int(partition.month[5:])
    days = range(1, calendar.monthrange(year, month)[1] + 1)
    return Table((("day", "string"), ("rows", "int")),
                 tuple((f"{partition.month}-{day:02d}", int(rows_by_day.get(day, 0))) for day in days))


def missing_days(partition: TradePartition, rows_by_day: Mapping[int, int]) -> list[str]:
    return [day for day, rows in days_table(partition, rows_by_day).rows if not rows]


def quarantine_markdown(rejected_by_reason: Mapping[str, int], rows_in: int) -> Markdown:
    """The quarantine summary of a materialisation: reasons and counts, largest first."""
    reasons = sorted(((r, n) for r, n in rejected_by_reason.items() if n), key=lambda item: (-item[1], item[0]))
    if not reasons:
        return Markdown(f"No row quarantined out of {rows_in:,}.")
    total = sum(n for _, n in reasons)
    return Markdown(f"{total:,} of {rows_in:,} source rows quarantined ({share(total, rows_in)}):\n\n"
                    + markdown_table(["reason", "rows", "share"],
                                     [(f"`{r}`", f"{n:,}", share(n, rows_in)) for r, n in reasons]))


def athena_query_url(region: str, query_id: str) -> str:
    """The Athena console's page of one query execution (its SQL, statistics and result)."""
    return (f"https://{region}.console.aws.amazon.com/athena/home?region={region}"
            f"#/query-editor/history/{query_id}")


def pipes_metadata(metadata: Mapping[str, Any]) -> dict:
    """Metadata for a Pipes report: typed values as they declare, scalars as they are, dicts and lists as JSON."""
    out = {}
    for key, value in metadata.items():
        if hasattr(value, "pipes_value"):
            out[key] = value.pipes_value()
        elif isinstance(value, (dict, list, tuple)):
            out[key] = {"raw_value": value, "type": "json"}
        else:
            out[key] = value
    return out
