"""Named SQL queries: loading them from `sql/`, validating and binding parameters, translating dialects.

Queries are written once, in Athena's dialect (Trino SQL), and run on Athena or, translated with
sqlglot, on DuckDB. Parameters appear as `:symbol`, `:year`, `:month`, `:day`; a value reaches an
engine only after validation, and only as a bound parameter (DuckDB named parameters, Athena
execution parameters), never pasted into the SQL text (docs/reliability.md case 25).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from market_etl.core.keys import InvalidPartitionKey, TradePartition, validate_month, validate_symbol

# The repository's sql/, shipped inside the package (market_etl/sql links to it), so an installed
# `market-etl query` finds it wherever it runs; a Traversable, as the package may be a zip on Glue.
SQL_DIR: Traversable = resources.files("market_etl") / "sql"
# Files of runnable queries. The DDL files in sql/ are Athena-only and are not run by this runner.
QUERY_FILES = ("athena_sample_queries.sql", "athena_analytics.sql")
NAME_LINE = re.compile(r"--\s*name:\s*(\S+)\s*")
QUERY_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
# EXPLAIN [ANALYZE] [VERBOSE] [(options)] <statement>: sqlglot has no tree for it (it would fall back to an
# opaque Command, with a warning), so the prefix is split off as text and the statement parsed on its own.
EXPLAIN = re.compile(r"\s*EXPLAIN\s+(?P<analyze>ANALYZE\s+)?(VERBOSE\s+)?(\([^)]*\)\s*)?", re.IGNORECASE)


class QueryError(ValueError):
    """A query that cannot be run as asked: unknown name, bad SQL file, missing parameter."""


class SqlRejected(QueryError):
    """SQL refused before or by an engine: it does not parse, is not one read statement, or names a table or
    column that does not exist."""


class QueryEngineFailed(QueryError):
    """The engine failed while running a valid query (a file it could not read, the service's own error)."""


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str  # Athena dialect, exactly as written in the file, `:name` placeholders, no trailing `;`
    source: str

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for _, _, name in placeholder_spans(self.sql)))


def placeholder_spans(sql: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each `:name` placeholder, in text order.

    Found with sqlglot's Athena tokenizer, so a `:x` inside a string literal or a comment is not a placeholder.
    """
    if sql in _COMPILED_SPANS:
        return _COMPILED_SPANS[sql]
    from sqlglot.dialects.athena import Athena
    from sqlglot.tokens import TokenType

    explain = EXPLAIN.match(sql)
    offset = explain.end() if explain else 0  # the tokenizer reads everything after EXPLAIN as one string
    tokens = Athena().tokenize(sql[offset:])
    spans = []
    for colon, word in zip(tokens, tokens[1:]):
        if colon.token_type is TokenType.COLON and word.start == colon.end + 1 and word.text.isidentifier():
            spans.append((offset + colon.start, offset + word.end + 1, word.text))
    return spans


def parse_named_queries(text: str, source: str) -> dict[str, NamedQuery]:
    """Split a file into `-- name: x` blocks; the comment lines right after the name describe the query."""
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = NAME_LINE.fullmatch(line.strip())
        if match:
            blocks.append((match.group(1), []))
        elif blocks:
            blocks[-1][1].append(line)
    queries: dict[str, NamedQuery] = {}
    for name, lines in blocks:
        if not QUERY_NAME.fullmatch(name):
            raise QueryError(f"{source}: query name {name!r} must be lower_snake_case")
        if name in queries:
            raise QueryError(f"{source}: query {name!r} is defined twice")
        description = []
        while lines and lines[0].strip().startswith("--"):
            description.append(lines.pop(0).strip()[2:].strip())
        body = "\n".join(lines).strip().rstrip(";").strip()
        import sqlglot

        try:
            statements = sqlglot.parse(body, read="athena")
        except sqlglot.errors.ParseError as err:
            raise QueryError(f"{source}: query {name!r} does not parse as Athena SQL: {err}") from err
        if len(statements) != 1:
            raise QueryError(f"{source}: query {name!r} must hold exactly one statement")
        queries[name] = NamedQuery(name=name, description=" ".join(description), sql=body, source=source)
    return queries


@functools.lru_cache(maxsize=None)
def load_queries(directory: Traversable = SQL_DIR, files: tuple[str, ...] = QUERY_FILES) -> dict[str, NamedQuery]:
    """Every named query of the query files; a name must be unique across files."""
    texts = {}
    for file_name in files:
        path = directory / file_name
        if not path.is_file():
            raise QueryError(f"SQL file {path} not found: the installed market-etl package lacks its sql/ files; "
                             "reinstall it (`pip install .` from a checkout)")
        texts[file_name] = path.read_text()
    compiled = _read_compiled(texts)
    if compiled is not None:
        return compiled
    queries = _parse_query_files(texts)
    _write_compiled(texts, queries)
    return queries


def _parse_query_files(texts: Mapping[str, str]) -> dict[str, NamedQuery]:
    queries: dict[str, NamedQuery] = {}
    for file_name, text in texts.items():
        for name, query in parse_named_queries(text, file_name).items():
            if name in queries:
                raise QueryError(f"query {name!r} is defined in both {queries[name].source} and {file_name}")
            queries[name] = query
    for query in queries.values():
        unknown = set(query.parameters) - set(PARAMETER_VALIDATORS)
        if unknown:
            raise QueryError(f"{query.source}: query {query.name!r} uses unknown parameters {sorted(unknown)}; "
                             f"known: {sorted(PARAMETER_VALIDATORS)}")
    return queries


# ---------------------------------------------------------------- compiled named queries
#
# Parsing the query files and translating a query to DuckDB takes sqlglot, whose import alone is most of a
# short `market-etl query`'s time. The result (each query's text, placeholders and DuckDB translation) is
# kept in a small JSON file in the user's cache directory, keyed by the query files' text, sqlglot's version
# and COMPILED_FORMAT: any change to one of them compiles again. Ad-hoc SQL is never cached.

COMPILED_FORMAT = 1
_COMPILED_SPANS: dict[str, list[tuple[int, int, str]]] = {}
_COMPILED_DUCKDB: dict[str, str] = {}


def compiled_cache_path(texts: Mapping[str, str]) -> Path | None:
    """`$XDG_CACHE_HOME/market-etl/queries-<key>.json` (default ~/.cache); None where sqlglot is not found."""
    spec = importlib.util.find_spec("sqlglot")
    if spec is None or spec.origin is None:
        return None
    version_file = Path(spec.origin).with_name("_version.py")
    sqlglot_version = version_file.read_text() if version_file.is_file() else str(Path(spec.origin).stat().st_mtime)
    key = hashlib.sha256(json.dumps([COMPILED_FORMAT, sqlglot_version, sorted(texts.items())]).encode()).hexdigest()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "market-etl" / f"queries-{key[:32]}.json"


def _read_compiled(texts: Mapping[str, str]) -> dict[str, NamedQuery] | None:
    path = compiled_cache_path(texts)
    try:
        entries = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None
    if not isinstance(entries, list):
        return None
    queries = {}
    for entry in entries:
        query = NamedQuery(name=entry["name"], description=entry["description"], sql=entry["sql"],
                           source=entry["source"])
        _COMPILED_SPANS[query.sql] = [tuple(span) for span in entry["spans"]]
        _COMPILED_DUCKDB[query.sql] = entry["duckdb"]
        queries[query.name] = query
    return queries


def _write_compiled(texts: Mapping[str, str], queries: Mapping[str, NamedQuery]) -> None:
    """Best effort: a cache directory that cannot be written only means compiling again next time."""
    path = compiled_cache_path(texts)
    if path is None:
        return
    try:
        entries = [{"name": q.name, "description": q.description, "sql": q.sql, "source": q.source,
                    "spans": placeholder_spans(q.sql), "duckdb": to_duckdb(q.sql)} for q in queries.values()]
    except QueryError:
        return  # a query DuckDB cannot run still runs on Athena; it is reported when run locally
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        temp.write_text(json.dumps(entries))
        os.replace(temp, path)
    except OSError:
        return


def get_query(name: str) -> NamedQuery:
    queries = load_queries()
    if name not in queries:
        raise QueryError(f"no query named {name!r}; known queries: {', '.join(sorted(queries))}")
    return queries[name]


def _int_in(low: int, high: int, what: str) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidPartitionKey(f"invalid {what} {value!r}: expected an integer {low}-{high}")
        return value
    return validate


PARAMETER_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "symbol": validate_symbol,
    "year": _int_in(2017, 9999, "year"),
    "month": _int_in(1, 12, "month"),
    "day": _int_in(1, 31, "day"),
}


def validate_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Each value checked on its own, then together: year-month inside Binance's range, a real calendar day."""
    unknown = set(values) - set(PARAMETER_VALIDATORS)
    if unknown:
        raise QueryError(f"unknown parameters {sorted(unknown)}; known: {sorted(PARAMETER_VALIDATORS)}")
    checked = {name: PARAMETER_VALIDATORS[name](value) for name, value in values.items()}
    if "year" in checked and "month" in checked:
        validate_month(f"{checked['year']:04d}-{checked['month']:02d}")
        if "day" in checked:
            try:
                dt.date(checked["year"], checked["month"], checked["day"])
            except ValueError as err:
                raise InvalidPartitionKey(f"invalid date {checked['year']}-{checked['month']}-{checked['day']}: {err}")
    return checked


def parameters_for(*, symbol: str | None = None, date: str | None = None, month: str | None = None) -> dict[str, Any]:
    """The parameters for the CLI's conveniences: `--date YYYY-MM-DD` sets year, month and day;
    `--month YYYY-MM` sets year and month."""
    if date and month:
        raise QueryError("give --date or --month, not both")
    values: dict[str, Any] = {}
    if symbol is not None:
        values["symbol"] = symbol
    if date is not None:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
            raise InvalidPartitionKey(f"invalid date {date!r}: expected YYYY-MM-DD, e.g. 2025-07-15")
        values.update(year=int(date[:4]), month=int(date[5:7]), day=int(date[8:]))
    if month is not None:
        values.update(year=int(validate_month(month)[:4]), month=int(month[5:]))
    return validate_parameters(values)


def partition_parameters(partition: TradePartition) -> dict[str, Any]:
    """The parameters that select one symbol x month partition."""
    return {"symbol": partition.symbol, "year": partition.year, "month": partition.month_number}


@functools.lru_cache(maxsize=256)
def to_duckdb(athena_sql: str) -> str:
    """Athena SQL -> DuckDB SQL (`:name` placeholders become DuckDB's `$name`)."""
    if athena_sql in _COMPILED_DUCKDB:
        return _COMPILED_DUCKDB[athena_sql]
    explain = EXPLAIN.match(athena_sql)
    if explain:
        return ("EXPLAIN ANALYZE " if explain.group("analyze") else "EXPLAIN ") + to_duckdb(athena_sql[explain.end():])
    import sqlglot

    try:
        (translated,) = sqlglot.transpile(athena_sql, read="athena", write="duckdb")
    except sqlglot.errors.ParseError as err:
        raise SqlRejected(f"SQL does not parse as Athena SQL: {err}") from err
    except ValueError as err:
        raise SqlRejected(f"expected exactly one SQL statement: {err}") from err
    return translated


# Statements that only read. Anything else (DDL, DML, UNLOAD, SET, COPY, ATTACH, CALL...) is refused, and
# so is a read statement that holds one of WRITE_NODES anywhere (a CTE with an INSERT, SELECT ... INTO).
def _statement_kinds() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(read statements, nodes that write), from sqlglot's expression classes."""
    from sqlglot import exp

    return ((exp.Query, exp.Values, exp.Describe),
            (exp.DML, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Into, exp.Copy, exp.Set, exp.Use,
             exp.Pragma, exp.TruncateTable, exp.Merge))


def require_read_only(sql: str) -> None:
    """Refuse anything but one read statement (SELECT, WITH ... SELECT, VALUES, DESCRIBE, or EXPLAIN of one).

    Ad-hoc SQL runs with the caller's credentials on Athena and on the lake's catalog file locally, so
    it is parsed here, before any engine sees it; an engine's own read-only mode is the second line.
    """
    explain = EXPLAIN.match(sql)
    if explain:
        return require_read_only(sql[explain.end():])
    import sqlglot

    read_statements, write_nodes = _statement_kinds()
    try:
        statements = [s for s in sqlglot.parse(sql, read="athena") if s is not None]
    except sqlglot.errors.ParseError as err:
        raise SqlRejected(f"SQL does not parse as Athena SQL: {err}") from err
    if len(statements) != 1:
        raise SqlRejected(f"expected exactly one SQL statement, got {len(statements)}")
    (statement,) = statements
    if not isinstance(statement, read_statements):
        raise SqlRejected(f"only read statements may run here (SELECT, WITH, VALUES, DESCRIBE, EXPLAIN); refused a "
                          f"{statement.key.upper()} statement: the lake's tables change only through the pipeline")
    for node in statement.walk():
        if isinstance(node, write_nodes):
            raise SqlRejected(f"only read statements may run here; refused: the query holds a "
                              f"{node.key.upper()} ({node.sql(dialect='athena')[:80]})")


def athena_literal(value: Any) -> str:
    """An Athena execution parameter is the SQL literal of the value."""
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class BoundQuery:
    """A query with validated parameter values, ready for either engine."""

    sql: str  # Athena dialect with `:name` placeholders
    values: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None

    def for_duckdb(self) -> tuple[str, dict[str, Any]]:
        return to_duckdb(self.sql), dict(self.values)

    def for_athena(self) -> tuple[str, list[str]]:
        """The SQL with `?` for each placeholder, and the execution parameters in the same order."""
        parts, parameters, position = [], [], 0
        for start, end, name in placeholder_spans(self.sql):
            parts.append(self.sql[position:start] + "?")
            parameters.append(athena_literal(self.values[name]))
            position = end
        parts.append(self.sql[position:])
        return "".join(parts), parameters

    @property
    def label(self) -> str:
        return self.name or "sql"


def bind(query: NamedQuery | str, values: Mapping[str, Any] | None = None) -> BoundQuery:
    """Validate `values` and attach them to the query; every placeholder needs a value and every value a placeholder."""
    sql, name = (query.sql, query.name) if isinstance(query, NamedQuery) else (query.strip().rstrip(";"), None)
    if name is None:
        require_read_only(sql)
    values = dict(values or {})
    needed = {n for _, _, n in placeholder_spans(sql)}
    missing, extra = needed - set(values), set(values) - needed
    what = f"query {name!r}" if name else "the SQL"
    if missing:
        flags = {"symbol": "--symbol", "year": "--date/--month", "month": "--date/--month", "day": "--date"}
        raise QueryError(f"{what} needs {', '.join(sorted(missing))} "
                         f"(give {', '.join(sorted({flags.get(m, m) for m in missing}))})")
    if extra:
        raise QueryError(f"{what} takes no parameter {', '.join(sorted(extra))}; its parameters: "
                         f"{', '.join(sorted(needed)) or 'none'}")
    return BoundQuery(sql=sql, values=validate_parameters(values), name=name)


@dataclass(frozen=True)
class QueryResult:
    """Rows plus what it cost: wall time and, where the engine says, files and bytes scanned."""

    columns: Sequence[str]
    rows: Sequence[tuple]
    seconds: float
    engine: str
    files_scanned: int | None = None
    files_total: int | None = None
    bytes_scanned: int | None = None

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def one(self) -> dict[str, Any]:
        if len(self.rows) != 1:
            raise QueryError(f"expected one row, got {len(self.rows)}")
        return self.records()[0]


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    metadata: dict[str, Any]


def check_outcome(result: QueryResult) -> CheckOutcome:
    """A check query returns one row; it passes when its `failures` column is 0 (compared exactly)."""
    row = result.one()
    if "failures" not in row:
        raise QueryError(f"a check query must return a `failures` column; got {list(row)}")
    metadata = {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}
    return CheckOutcome(passed=row["failures"] == 0, metadata=metadata)
