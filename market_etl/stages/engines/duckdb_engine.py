"""The vectorised ETL engine (DuckDB): one symbol-month of trades CSV -> staged Parquet + a StagedVersion manifest.

The default on the local runtime (`MARKET_ETL_ETL_ENGINE`, docs in README "ETL engines"); Glue runs the
Spark engine (`market_etl.stages.etl`). Both compile the same rule table (`market_etl.core.rules`) and
the parity suite (market_etl_tests/integration/test_engine_parity.py) proves they write the same rows,
reject the same lines for the same reasons, count the same and write the same Parquet schema.

Parsing reproduces the Spark engine's, value for value, because the Spark engine is the reference:

- a field is an integer the way Spark's string-to-long cast reads it (`spark_long`): surrounding bytes
  0x00-0x20 and 0x7f ignored, an optional sign, digits, optionally a dot and digits (ignored); null on
  anything else or on overflow. DuckDB's own cast rounds "1.5" and accepts "1e5", so it only runs on
  text already known to be plain digits; the rest goes through the pattern.
- a decimal is exact or null (`spark_decimal`): at most 8 places (bytes after the first dot), the text
  plain by the long rule or by the pattern, then cast; a cast that would round or overflow gives null.
  DuckDB's decimal cast rounds extra places and accepts exponents: it never sees such text.
- a line whose numeric fields are already in the fast paths' form (`plain_line_pattern`, what Binance
  writes) is cast field by field without the macros: one regex per line instead of one per field.

One scan of the CSV fills an in-memory DuckDB table (spilling to the run's directory in the temp zone
beyond the memory limit) with every row's typed values and rule; the rest are queries over it: the quarantine, the
counts, the id layout (runs of consecutive ids, `core.rules.analyse_segments`, as Spark), the dedupe
and one Parquet file per day sorted by trade time, written with pyarrow so the physical and logical
types are exactly Spark's (DuckDB's own writer stores decimal(28,8) in 16 bytes and annotates ints).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from market_etl.core.tables import TRADES_COLUMNS, TRADES_PARTITION_KEYS
from market_etl.core.checks import RULE_CHECKS, contiguity_outcome, reconciliation_outcome, rule_check_outcome
from market_etl.core.keys import (
    TradePartition,
    Zone,
    lake_key,
    new_run_id,
    staged_manifest_key,
    staged_rejected_file_key,
    staged_trades_file_key,
)
from market_etl.core.rules import (
    FALSE_TEXTS,
    MICROS_PER_DAY,
    PRICE_PRECISION,
    QUANTITY_PRECISION,
    RULES,
    SCALE,
    TIME_UNIT_DIGITS,
    TRUE_TEXTS,
    IdLayout,
    MonthBounds,
    SourceError,
    SourceLayout,
    analyse_segments,
    rule_case_sql,
    rules_of_check,
    time_unit_of,
    translate,
)
from market_etl.core.staged import StagedCheck, StagedFile, StagedVersion
from market_etl.lake import Lake, LocalLake

#: Phase lines; the stage entry point forwards its logger (this one's parent) to the Pipes log.
log = logging.getLogger("market_etl.stages.etl.duckdb")

ENGINE = "duckdb"
#: Memory DuckDB may use before it spills to the temp zone (MARKET_ETL_DUCKDB_MEMORY_LIMIT).
DEFAULT_MEMORY_LIMIT = "2GB"
#: Rows per Parquet row group: Spark's 128 MiB blocks hold about this many trades.
ROW_GROUP_ROWS = 1_048_576
MAX_CONFLICTS_LISTED = 10
#: Bytes Spark's string-to-long cast ignores around a number (UTF8String.toLong: whitespace or ISO control).
_PAD = r"[\x00-\x20\x7f]"
#: Bytes Java's String.trim ignores (Spark's string-to-decimal cast).
_JAVA_TRIM = r"[\x00-\x20]"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _macros(con) -> None:
    """Spark's casts, as DuckDB macros (see the module docstring)."""
    con.execute(rf"""
        CREATE OR REPLACE TEMP MACRO spark_long_slow(t) AS CASE
            WHEN regexp_full_match(t, '{_PAD}*[+-]?[0-9]*(\.[0-9]*)?{_PAD}*')
                 AND NOT regexp_full_match(t, '{_PAD}*[+-]?{_PAD}*')
            THEN CASE WHEN regexp_extract(t, '^{_PAD}*([+-]?[0-9]*)', 1) IN ('', '+', '-') THEN 0::BIGINT
                      ELSE TRY_CAST(regexp_extract(t, '^{_PAD}*([+-]?[0-9]*)', 1) AS BIGINT) END
        END""")
    con.execute(r"""
        CREATE OR REPLACE TEMP MACRO spark_long(t) AS CASE
            WHEN regexp_full_match(t, '[0-9]{1,18}') THEN CAST(t AS BIGINT) ELSE spark_long_slow(t) END""")
    for precision in (PRICE_PRECISION, QUANTITY_PRECISION):
        whole = precision - SCALE
        con.execute(rf"""
            CREATE OR REPLACE TEMP MACRO spark_decimal_{precision}(t) AS CASE
                WHEN regexp_full_match(t, '[0-9]{{1,{whole}}}(\.[0-9]{{1,{SCALE}}})?')
                    THEN CAST(t AS DECIMAL({precision},{SCALE}))
                WHEN (instr(t, '.') = 0 OR (strlen(t) > instr(t, '.') AND strlen(t) - instr(t, '.') <= {SCALE}))
                     AND (spark_long_slow(t) IS NOT NULL
                          OR regexp_full_match(t, '[+-]?[0-9]{{1,{whole}}}(\.[0-9]{{1,{SCALE}}})?'))
                     AND regexp_full_match(t, '{_JAVA_TRIM}*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+){_JAVA_TRIM}*')
                    THEN TRY_CAST(regexp_replace(t, '^{_JAVA_TRIM}+|{_JAVA_TRIM}+$', '', 'g')
                                  AS DECIMAL({precision},{SCALE}))
            END""")


SCAN_CHUNK_BYTES = 64 * 1024 * 1024

#: Bytes the CSV reader may use as its field delimiter and null string, which must not occur in the file: the
#: reader splits each line on the delimiter and keeps its first field only (a line holding one would be cut
#: short, and a cut line could pass every rule), and a line equal to the null string would read as NULL (no text
#: to quarantine).
READER_CONTROL_BYTES = tuple(chr(b) for b in (*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F))
#: The pair used unless the file holds one of them (Binance writes neither).
READER_DEFAULT_BYTES = READER_CONTROL_BYTES[:2]


def reader_control_bytes(path: str | os.PathLike) -> tuple[str, str]:
    """(delimiter, null string) for reading `path` line by line: the first two control bytes it does not hold.

    A whole extra pass over the file, in chunks (memory stays bounded): the engine runs it only for a file that
    holds a default one (`scan_source`), which Binance's files never do."""
    present: set[str] = set()
    buffer = bytearray(SCAN_CHUNK_BYTES)
    with open(path, "rb", buffering=0) as f:
        while size := f.readinto(buffer):
            present |= {b for b in READER_CONTROL_BYTES
                        if b not in present and buffer.find(b.encode(), 0, size) != -1}
    absent = [b for b in READER_CONTROL_BYTES if b not in present]
    if len(absent) < 2:
        raise SourceError(f"{path}: the file holds nearly every ASCII control byte, so the DuckDB engine cannot "
                          "read it line by line; it is not a Binance trades CSV (MARKET_ETL_ETL_ENGINE=spark "
                          "reads it)")
    return absent[0], absent[1]


def scan_source(path: str | os.PathLike) -> tuple[int, bool]:
    """What DuckDB's line reader would miss, found beside its scan: (empty lines, whether the file holds the
    reader's default control bytes, `READER_DEFAULT_BYTES`).

    Empty lines (`\n\n`, `\n\r\n`): Spark's line reader yields each as a row (a malformed line), DuckDB's CSV
    reader skips them, so the engine counts them itself. One regex search over the mapped file says whether
    there is any (measured: a sixth of the CPU of counting every chunk with numpy, which was an eighth of the
    engine's); only then are they counted. A leading blank line never gets here (the preflight refuses it).
    The control bytes are two memchr passes over the same mapping (0.16 s for 2.3 GB).
    """
    import mmap

    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return 0, False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            holds_reader_bytes = any(mapped.find(b.encode()) != -1 for b in READER_DEFAULT_BYTES)
            any_blank = re.search(rb"\n\r?\n", mapped) is not None
    return (_count_blank_lines_exactly(path) if any_blank else 0), holds_reader_bytes


def _count_blank_lines_exactly(path: str | os.PathLike) -> int:
    """Every `\n\n` and `\n\r\n`, overlapping ones too (`\n\n\n` holds two), chunk by chunk with numpy."""
    import numpy as np

    blanks, carry = 0, np.zeros(0, dtype=np.uint8)
    with open(path, "rb") as f:
        while chunk := f.read(SCAN_CHUNK_BYTES):
            data = np.concatenate([carry, np.frombuffer(chunk, dtype=np.uint8)])
            newlines = np.flatnonzero(data == 10)
            if newlines.size:
                step = np.diff(newlines)
                blanks += int(np.count_nonzero(step == 1))
                two = newlines[:-1][step == 2]
                blanks += int(np.count_nonzero(data[two + 1] == 13))
            # The bytes from the last newline on: a pair split across chunks is found in the next one.
            carry = data[newlines[-1]:] if newlines.size else data[-2:]
    return blanks


def _bool_sql(column: str) -> str:
    """True/false for the spellings Binance writes, null for anything else.

    A simple CASE on the value (one comparison per spelling) rather than `IN` lists: measured half the CPU.
    """
    spellings = [(t, "true") for t in TRUE_TEXTS] + [(f, "false") for f in FALSE_TEXTS]
    return f"CASE {column} " + " ".join(f"WHEN {_sql_string(text)} THEN {value}" for text, value in spellings) + " END"


def plain_line_pattern() -> str:
    """A line whose numeric fields (id to time) are all in the form the casts' fast paths read exactly (`_macros`).

    One regex over the line decides for all fields at once (measured: a sixth less CPU for the parse than
    a pattern per field); a line that does not match goes through the macros, so values are the same. The
    flags are not in it: they are parsed by comparison (`_bool_sql`) either way, and the pattern stops at
    the time (measured: a tenth less CPU for the regex, the largest part of the parse).
    """
    whole_price, whole_quantity = PRICE_PRECISION - SCALE, QUANTITY_PRECISION - SCALE
    epoch = "|".join(f"[0-9]{{{digits}}}" for digits in sorted(TIME_UNIT_DIGITS.values()))
    return ",".join([
        "[0-9]{1,18}",
        rf"[0-9]{{1,{whole_price}}}(\.[0-9]{{1,{SCALE}}})?",
        rf"[0-9]{{1,{whole_quantity}}}(\.[0-9]{{1,{SCALE}}})?",
        rf"[0-9]{{1,{whole_quantity}}}(\.[0-9]{{1,{SCALE}}})?",
        f"({epoch})", ".*"])


def checked_sql(csv_path: str, layout: SourceLayout, bounds: MonthBounds,
                delimiter: str = READER_DEFAULT_BYTES[0], nullstr: str = READER_DEFAULT_BYTES[1]) -> str:
    """Every source line -> its typed values, `time_digits`, `day` and `rule` (the first rule broken, null if none).

    The line text is kept for rejected rows only (the quarantine writes it; valid rows are rebuilt from values).
    `delimiter` and `nullstr` must be absent from the file (`scan_source`, `reader_control_bytes`), so each line
    reads whole.
    """
    header = f"WHERE line <> {_sql_string(layout.header)}" if layout.header is not None else ""
    digits_ms, digits_us = TIME_UNIT_DIGITS["ms"], TIME_UNIT_DIGITS["us"]
    rule = translate(rule_case_sql(bounds), "duckdb")
    # One byte a row where a VARCHAR takes sixteen: 30M rows fit the memory limit instead of spilling.
    rule_enum = "ENUM(" + ", ".join(_sql_string(r.name) for r in RULES) + ")"
    price_type, quantity_type = f"DECIMAL({PRICE_PRECISION},{SCALE})", f"DECIMAL({QUANTITY_PRECISION},{SCALE})"
    time_value = "CASE WHEN plain THEN CAST(p[5] AS BIGINT) ELSE spark_long(p[5]) END"
    return f"""
        WITH lines AS (
            SELECT line FROM read_csv({_sql_string(csv_path)}, columns = {{'line': 'VARCHAR'}}, header = false,
                auto_detect = false, delim = {_sql_string(delimiter)}, quote = '', escape = '', strict_mode = false,
                nullstr = {_sql_string(nullstr)})
            {header}
        ), parts AS (
            SELECT line, string_split(line, ',') AS p, regexp_full_match(line, {_sql_string(plain_line_pattern())}) AS plain
            FROM lines
        ), parsed AS (
            SELECT line, len(p) AS n_fields, p[2] AS price, p[3] AS qty,
                   CASE WHEN plain THEN CAST(p[1] AS BIGINT) ELSE spark_long(p[1]) END AS trade_id,
                   CASE WHEN plain THEN CAST(p[2] AS {price_type}) ELSE spark_decimal_{PRICE_PRECISION}(p[2]) END
                       AS price_value,
                   CASE WHEN plain THEN CAST(p[3] AS {quantity_type}) ELSE spark_decimal_{QUANTITY_PRECISION}(p[3]) END
                       AS quantity,
                   CASE WHEN plain THEN CAST(p[4] AS {quantity_type}) ELSE spark_decimal_{QUANTITY_PRECISION}(p[4]) END
                       AS quote_qty_value,
                   strlen(p[5]) AS time_digits,
                   CASE strlen(p[5]) WHEN {digits_us} THEN {time_value}
                                     WHEN {digits_ms} THEN {time_value} * 1000 END AS time_us,
                   {_bool_sql("p[6]")} AS buyer_maker_value,
                   {_bool_sql("p[7]")} AS best_match_value
            FROM parts
        ), ruled AS (
            SELECT *, {rule} AS rule FROM parsed
        )
        SELECT CASE WHEN rule IS NOT NULL THEN line END AS line, CAST(rule AS {rule_enum}) AS rule, trade_id,
               price_value AS price, quantity,
               quote_qty_value AS quote_qty, time_us, time_digits::TINYINT AS time_digits,
               buyer_maker_value AS is_buyer_maker, best_match_value AS is_best_match,
               CAST((time_us - {bounds.start_us}) // {MICROS_PER_DAY} + 1 AS INTEGER) AS day
        FROM ruled
    """


def _arrow_schema():
    """The processed file schema in Arrow terms: what Spark writes (TIMESTAMP_MICROS, UTC; decimals exact)."""
    import pyarrow as pa

    types = {"bigint": pa.int64(), f"decimal({PRICE_PRECISION},{SCALE})": pa.decimal128(PRICE_PRECISION, SCALE),
             f"decimal({QUANTITY_PRECISION},{SCALE})": pa.decimal128(QUANTITY_PRECISION, SCALE),
             "timestamp": pa.timestamp("us", tz="UTC"), "boolean": pa.bool_(), "int": pa.int32(),
             "string": pa.string()}
    return pa.schema([(name, types[kind]) for name, kind in TRADES_COLUMNS + TRADES_PARTITION_KEYS])


def _rejected_schema():
    import pyarrow as pa

    return pa.schema([("line", pa.string()), ("reason", pa.string()), ("rule", pa.string()),
                      ("symbol", pa.string()), ("month", pa.string()), ("run", pa.string())])


def write_parquet(table, path: Path, plain_encoded: tuple[str, ...] = ()) -> int:
    """Snappy Parquet with statistics, decimals as Spark stores them (INT64 up to 18 digits, else 12 bytes).

    `plain_encoded`: columns written without a dictionary, as the Spark engine writes them (unique
    values: the dictionary only costs; measured 45% of pyarrow's write CPU on a generated month).
    """
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.inprogress")
    dictionary = [name for name in table.column_names if name not in plain_encoded]
    pq.write_table(table, temp, compression="snappy", store_decimal_as_integer=True, store_schema=False,
                   row_group_size=ROW_GROUP_ROWS, write_statistics=True, use_dictionary=dictionary)
    os.replace(temp, path)
    return path.stat().st_size


def in_trade_time_order(table):
    """The day's rows by trade time, trade id breaking ties (ids are unique here: deduplicated before).

    Binance writes a file in id order, hence time order: checking that costs a vectorised comparison,
    where DuckDB's ORDER BY sorted every day anyway (measured: 0.4 of 6 CPU-s on a generated month).
    """
    import numpy as np

    times = table.column("trade_time").to_numpy()
    ids = table.column("trade_id").to_numpy()
    ordered = (times[1:] > times[:-1]) | ((times[1:] == times[:-1]) & (ids[1:] > ids[:-1]))
    if ordered.all():
        return table
    return table.sort_by([("trade_time", "ascending"), ("trade_id", "ascending")])


class DuckDBEngine:
    """One partition's run. `run()` writes the staged files and manifest; nothing is committed here."""

    def __init__(self, partition: TradePartition, lake: Lake, layout: SourceLayout, *, source_key: str,
                 workdir_key: str, run_id: str | None = None, threads: int | None = None,
                 memory_limit: str | None = None) -> None:
        if not isinstance(lake, LocalLake):
            raise ValueError(
                f"the duckdb ETL engine reads and writes a local lake; {lake.uri()} is not one: "
                "set MARKET_ETL_ETL_ENGINE=spark (what the aws runtime runs on Glue)")
        self.partition, self.lake, self.layout = partition, lake, layout
        self.source_key, self.workdir = source_key, lake.path(workdir_key)
        self.run_id = run_id or new_run_id()
        self.threads = threads or os.cpu_count() or 1
        self.memory_limit = memory_limit or os.environ.get("MARKET_ETL_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)
        self.phases: dict[str, float] = {}
        self.phase_cpu: dict[str, float] = {}
        self._cpu = time.process_time()

    def _lap(self, phase: str, since: float) -> float:
        now, cpu = time.perf_counter(), time.process_time()
        log.info(f"etl: {phase} finished in {now - since:.1f}s")
        self.phases[phase] = round(self.phases.get(phase, 0.0) + now - since, 2)
        self.phase_cpu[phase] = round(self.phase_cpu.get(phase, 0.0) + cpu - self._cpu, 2)
        self._cpu = cpu
        return now

    def _connect(self):
        import duckdb

        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # In memory (measured: a third less CPU than a database file, which compresses and checkpoints);
        # beyond the memory limit DuckDB spills to the temp zone.
        con = duckdb.connect(":memory:", config={
            "threads": self.threads, "memory_limit": self.memory_limit,
            "temp_directory": str(self.workdir / "spill"), "preserve_insertion_order": True,
        })
        con.execute("SET TimeZone = 'UTC'")
        _macros(con)
        return con

    def run(self, reject_tolerance: float = 0.0) -> tuple[StagedVersion, dict, list]:
        log.info(f"etl: duckdb engine started on {self.partition} (phases: parse_validate, valid_table, verify_ids, "
                 "quarantine, write)")
        con = self._connect()
        try:
            return self._run(con, reject_tolerance)
        finally:
            con.close()
            shutil.rmtree(self.workdir, ignore_errors=True)
            try:  # the partition's temp directory, unless another run is using it
                self.workdir.parent.rmdir()
            except OSError:
                pass

    def _read_checked(self, con, query: str) -> None:
        """The `checked` table from `query`; a line that is not UTF-8 fails the run with a SourceError naming it."""
        import duckdb

        try:
            con.execute(f"CREATE TABLE checked AS {query}")
        except duckdb.InvalidInputException as err:
            if "Invalid unicode" not in str(err):
                raise
            where = re.search(r"CSV Error on Line: (\d+)", str(err))
            raise SourceError(
                f"{self.lake.uri(self.source_key)}: line {where.group(1) if where else '?'} is not UTF-8, which the "
                "DuckDB engine cannot read; the Spark engine quarantines such a line (MARKET_ETL_ETL_ENGINE=spark)"
            ) from err

    def _run(self, con, reject_tolerance: float):
        partition, clock = self.partition, time.perf_counter()
        bounds = MonthBounds.of(partition)
        csv_path = str(self.lake.path(self.source_key))
        # One scan: every row typed and judged, in file order (the table's rowid is the line's position).
        with ThreadPoolExecutor(max_workers=1) as scan:
            scanned = scan.submit(scan_source, csv_path)
            self._read_checked(con, checked_sql(csv_path, self.layout, bounds))
            blanks, holds_reader_bytes = scanned.result()
        if holds_reader_bytes:  # lines may have been read cut short or as NULL: again, with two the file lacks
            log.info(f"etl: {partition}: the file holds the line reader's control bytes; reading it again")
            con.execute("DROP TABLE checked")
            self._read_checked(con, checked_sql(csv_path, self.layout, bounds, *reader_control_bytes(csv_path)))
        if blanks:  # rows as Spark reads them: an empty line, malformed
            con.execute(f"INSERT INTO checked (line, rule) SELECT '', 'seven_fields' FROM range({blanks})")
        rows_in, rows_rejected_seen, low, high = con.execute(
            "SELECT count(*), count(rule), min(time_digits) FILTER (time_us IS NOT NULL), "
            "max(time_digits) FILTER (time_us IS NOT NULL) FROM checked").fetchone()
        clock = self._lap("parse_validate", clock)
        time_unit = time_unit_of({"min_time_digits": low, "max_time_digits": high})

        # Ids of the valid rows in file order: runs of consecutive ids, as the Spark engine finds them.
        if rows_rejected_seen:
            con.execute("CREATE TABLE valid AS SELECT * EXCLUDE (line, rule, time_digits) FROM checked "
                        "WHERE rule IS NULL")
        else:  # every row valid (the usual case): no copy, the rest only reads the columns it names
            con.execute("ALTER TABLE checked RENAME TO valid")
        clock = self._lap("valid_table", clock)
        ids = self._layout(con)
        clock = self._lap("verify_ids", clock)
        duplicates_removed = 0
        if not ids.unique:
            duplicates_removed = self._deduplicate(con)
            ids = self._layout(con)
            clock = self._lap("deduplicate", clock)

        rejected_by_rule, samples, rejected_files = {}, {}, ()
        if rows_rejected_seen:
            rejected_by_rule, samples, rejected_files = self._quarantine(con)
            clock = self._lap("quarantine", clock)
        trades_files = self._write_days(con, bounds)
        clock = self._lap("write", clock)

        rows_rejected = sum(rejected_by_rule.values())
        checks = [rule_check_outcome(check, rows_in, rejected_by_rule, reject_tolerance,
                                     *samples.get(check, ((), ()))) for check in RULE_CHECKS]
        checks.append(reconciliation_outcome(rows_in, ids.rows, rows_rejected, duplicates_removed))
        checks.append(contiguity_outcome(ids))
        staged = StagedVersion(
            partition=partition, run_id=self.run_id,
            source_sha256=(self.lake.read_meta(self.source_key) or {}).get("source_sha256"),
            transform_version="", engine=ENGINE, trades_files=trades_files, rejected_files=rejected_files,
            rows_in=rows_in, rows_written=ids.rows, rows_rejected=rows_rejected,
            duplicates_removed=duplicates_removed,
            checks=tuple(StagedCheck(c.name, c.passed, c.severity == "ERROR", c.severity) for c in checks))
        counts = {"rejected_by_rule": rejected_by_rule, "ids": ids, "time_unit": time_unit,
                  "duplicates_removed": duplicates_removed}
        return staged, counts, checks

    def _layout(self, con) -> IdLayout:
        segments = con.execute("SELECT count(*), min(trade_id), max(trade_id) FROM valid "
                               "GROUP BY trade_id - rowid").fetchall()
        layout = analyse_segments(segments)
        if layout is None:  # rows out of id order: decide on the sorted ids
            layout = analyse_segments(con.execute(
                "SELECT count(*), min(trade_id), max(trade_id) FROM "
                "(SELECT trade_id, trade_id - row_number() OVER (ORDER BY trade_id) AS run FROM valid) "
                "GROUP BY run").fetchall(), ids_sorted=True)
        return layout

    def _deduplicate(self, con) -> int:
        """Drop exact duplicate rows (returns how many); the same id with different values fails the run."""
        values = ", ".join("time_us" if name == "trade_time" else name for name, _ in TRADES_COLUMNS
                           if name != "trade_id")
        con.execute(f"""CREATE TABLE duplicated AS SELECT trade_id, count(*) AS copies,
                        count(DISTINCT ({values})) AS variants FROM valid GROUP BY trade_id HAVING count(*) > 1""")
        conflicts = [r[0] for r in con.execute(
            f"SELECT trade_id FROM duplicated WHERE variants > 1 ORDER BY trade_id LIMIT {MAX_CONFLICTS_LISTED}"
        ).fetchall()]
        if conflicts:
            [(n,)] = con.execute("SELECT count(*) FROM duplicated WHERE variants > 1").fetchall()
            raise SourceError(
                f"{n} trade id(s) appear with different values, e.g. " + ", ".join(map(str, conflicts))
                + ": the source contradicts itself, nothing was written; check the upstream file")
        [(removed,)] = con.execute("SELECT coalesce(sum(copies - 1), 0) FROM duplicated").fetchall()
        # Keep the first copy in file order, so rowid order (file order) still holds for the layout.
        con.execute("""CREATE TABLE deduplicated AS SELECT * EXCLUDE (pos) FROM (SELECT *, rowid AS pos FROM valid)
                       WHERE pos NOT IN (SELECT v.rowid FROM valid v JOIN duplicated d USING (trade_id))
                          OR pos IN (SELECT min(v.rowid) FROM valid v JOIN duplicated d USING (trade_id)
                                     GROUP BY trade_id)
                       ORDER BY pos""")
        con.execute("DROP TABLE valid")
        con.execute("ALTER TABLE deduplicated RENAME TO valid")
        return int(removed)

    def _quarantine(self, con):
        import pyarrow as pa

        reasons = "CASE rule " + " ".join(f"WHEN '{r.name}' THEN '{r.reason}'" for r in RULES) + " END"
        p = self.partition
        table = con.sql(f"""SELECT line, {reasons} AS reason, rule, {_sql_string(p.symbol)} AS symbol,
                                {_sql_string(p.month)} AS month, {_sql_string(self.run_id)} AS run
                                FROM checked WHERE rule IS NOT NULL ORDER BY rowid""").to_arrow_table()
        table = table.cast(_rejected_schema())
        key = staged_rejected_file_key(p, self.run_id)
        size = write_parquet(table, self.lake.path(key))
        counts = {r[0]: r[1] for r in con.execute(
            "SELECT rule, count(*) FROM checked WHERE rule IS NOT NULL GROUP BY rule").fetchall()}
        samples = {}
        for check in RULE_CHECKS:
            names = [r.name for r in rules_of_check(check)]
            if any(counts.get(n) for n in names):
                # As the Spark engine: the first 10 by the line's leading id (as Spark casts it), then line.
                rows = con.execute(f"""SELECT spark_long(split_part(line, ',', 1)) AS id, line FROM checked
                                       WHERE rule IN ({", ".join(_sql_string(n) for n in names)})
                                       ORDER BY id ASC NULLS LAST, line LIMIT 10""").fetchall()
                samples[check] = ([i for i, _ in rows if i is not None], [line for _, line in rows])
        return counts, samples, (StagedFile(key, table.num_rows, size),)

    def _write_days(self, con, bounds: MonthBounds) -> tuple[StagedFile, ...]:
        """One file per day, rows in trade-time order (id breaks ties), every table column in it."""
        from market_etl.stages.etl import PLAIN_ENCODED

        p, schema = self.partition, _arrow_schema()
        days = [d for (d,) in con.execute("SELECT DISTINCT day FROM valid ORDER BY day").fetchall()]

        def write_day(day: int) -> StagedFile:
            table = con.cursor().sql(f"""
                SELECT trade_id, price, quantity, quote_qty, make_timestamptz(time_us) AS trade_time,
                       is_buyer_maker, is_best_match, {p.year}::INTEGER AS year, {p.month_number}::INTEGER AS month,
                       day, {_sql_string(p.symbol)} AS symbol
                FROM valid WHERE day = {day}""").to_arrow_table().cast(schema)
            table = in_trade_time_order(table)
            key = staged_trades_file_key(p, day, self.run_id)
            return StagedFile(key, table.num_rows, write_parquet(table, self.lake.path(key), PLAIN_ENCODED))

        # Days in parallel: DuckDB's sort and pyarrow's encoding both release the GIL.
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            return tuple(pool.map(write_day, days))


def write_manifest(lake: Lake, staged: StagedVersion) -> str:
    key = staged_manifest_key(staged.partition, staged.run_id)
    lake.put_bytes(key, staged.to_json().encode())
    return key


def workdir_key(partition: TradePartition, run_id: str) -> str:
    """The run's own scratch directory (spilled data): two runs of one partition never share one."""
    return f"{lake_key(Zone.TEMP, partition)}/duckdb-{run_id}"


def run_duckdb_etl(partition: TradePartition, lake: Lake, *, reject_tolerance: float = 0.0,
                   run_id: str | None = None, dagster_run_id: str | None = None, threads: int | None = None,
                   force: bool = False):
    """The whole stage for one partition on DuckDB: staged files + manifest, the stage's metadata and checks.

    Skips (metadata `status` "up to date", with the reason) when `up_to_date` finds nothing changed, unless
    `force`. Raises SchemaDrift / SourceError / UpstreamMissing as the Spark engine does; nothing is
    committed (the publish step commits the manifest's files when its blocking checks passed).
    """
    from market_etl.stages.etl import (
        TRANSFORM_VERSION,
        EtlResult,
        Paths,
        data_version,
        operator_metadata,
        preflight,
        record_build,
        up_to_date,
    )

    if not force and (previous := up_to_date(lake, partition, reject_tolerance)) is not None:
        return previous
    started = time.perf_counter()
    run_id = run_id or new_run_id()
    paths = Paths.of(partition, run_id)
    layout = preflight(lake, partition)
    engine = DuckDBEngine(partition, lake, layout, source_key=paths.source,
                          workdir_key=workdir_key(partition, run_id), run_id=run_id, threads=threads)
    staged, counts, checks = engine.run(reject_tolerance)
    staged = StagedVersion(**{**staged.__dict__, "transform_version": TRANSFORM_VERSION,
                              "dagster_run_id": dagster_run_id})
    manifest = write_manifest(lake, staged)
    seconds = time.perf_counter() - started
    ids: IdLayout = counts["ids"]
    rejected_by_rule = counts["rejected_by_rule"]
    metadata = {
        "rows_in": staged.rows_in,
        "rows_written": staged.rows_written,
        "rows_rejected": staged.rows_rejected,
        "rejected_by_reason": {rule.reason: int(rejected_by_rule[rule.name]) for rule in RULES
                               if rejected_by_rule.get(rule.name)},
        "duplicates_removed": staged.duplicates_removed,
        "deduplication": ("ran: ids repeated in the source" if staged.duplicates_removed
                          else "skipped: ids already unique"),
        "days_written": len(staged.trades_files),
        "days_removed": 0,  # the publish step drops days a new version no longer has
        "files_written": len(staged.trades_files) + len(staged.rejected_files),
        "output_bytes": sum(f.bytes for f in staged.trades_files),
        "first_trade_id": ids.first_id,
        "last_trade_id": ids.last_id,
        "id_gaps": len(ids.gaps),
        "missing_ids": ids.missing_ids,
        "time_unit": counts["time_unit"],
        "header": layout.header is not None,
        "engine": ENGINE,
        "etl_seconds": round(seconds, 2),
        "phase_seconds": engine.phases,
        "phase_cpu_seconds": engine.phase_cpu,
        "rows_per_second": round(staged.rows_in / seconds) if seconds else 0,
        "status": "built",
        "run_id": staged.run_id,
        "manifest_key": manifest,
        "manifest_uri": lake.uri(manifest),
        "publishable": staged.publishable,
        "failed_blocking_checks": list(staged.failed_blocking_checks),
        "source_sha256": staged.source_sha256,
        "processed_uri": lake.uri(lake_key(Zone.PROCESSED, partition)),
        "rejected_uri": lake.uri(lake_key(Zone.REJECTED, partition)) if staged.rows_rejected else None,
    }
    result = EtlResult(partition, metadata, checks, data_version(lake, paths.source))
    if result.data_version is not None:
        record_build(lake, result, reject_tolerance)
    # Typed values for the UI (tables, schema), derived from the staged files; not part of the JSON record.
    metadata.update(operator_metadata(partition, staged.trades_files, metadata))
    return result
