"""The asset checks of processed/trades: declared once here, computed from what the ETL counted.

The Dagster asset builds its check specs from `CHECKS`; the stage reports an outcome for each of them
through Pipes. A rule check judges the *source* partition: processed/ only ever holds valid rows, so
the check is what tells users the upstream file had bad rows (how many, which, why).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from market_etl.core.metadata import Markdown, code_block, markdown_table, share
from market_etl.core.rules import RULES, IdLayout, rules_of_check

MAX_LISTED = 10  # offending ids, gaps and sample lines listed in a check's metadata
MAX_SHOWN_LINES = 5  # sample source lines in the check's readable summary


@dataclass(frozen=True)
class CheckDefinition:
    name: str
    severity: str  # "ERROR" (blocking downstream) or "WARN"
    description: str

    @property
    def blocking(self) -> bool:
        return self.severity == "ERROR"


def _rule_check(name: str, what: str) -> CheckDefinition:
    rules = "; ".join(f"`{r.reason}`: {r.description}" for r in rules_of_check(name))
    return CheckDefinition(name, "ERROR", (
        f"{what} Fails when more of the source partition's rows than the tolerance (default: none) were "
        f"quarantined under its rules (rejected/trades/symbol=S/month=YYYY-MM/): {rules}"
    ))


CHECKS: tuple[CheckDefinition, ...] = (
    _rule_check("well_formed_rows", "Every source line is a well-formed Binance trade row."),
    _rule_check("valid_trade_dates", "Every trade time is a valid epoch inside the partition's month."),
    _rule_check("positive_prices", "Every price is present, an exact decimal, and greater than zero."),
    _rule_check("positive_quantities", "Every quantity is present, an exact decimal, and greater than zero."),
    CheckDefinition("rows_reconciled", "ERROR", (
        "No row disappeared: rows_in = rows_written + rows_rejected + duplicates_removed, with rows_written "
        "and rows_rejected counted from the files actually written."
    )),
    CheckDefinition("trade_ids_contiguous", "WARN", (
        "Trade ids run without gaps from the first to the last. Gaps happen upstream (days cut off, "
        "Binance issues #28 #213 #363 #458); WARN with how many ids are missing and where."
    )),
)
CHECKS_BY_NAME = {c.name: c for c in CHECKS}
RULE_CHECKS = tuple(c.name for c in CHECKS if rules_of_check(c.name))
assert {r.check for r in RULES} <= set(RULE_CHECKS), "every rule must belong to a declared check"


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    severity: str
    metadata: dict = field(default_factory=dict)


def rule_check_outcome(check: str, rows_in: int, rejected_by_rule: Mapping[str, int], tolerance: float,
                       offending_ids: Sequence[int] = (), sample_lines: Sequence[str] = ()) -> CheckOutcome:
    """Passes while the rows quarantined under the check's rules stay within `tolerance` x rows_in."""
    rules = rules_of_check(check)
    by_reason = {r.reason: int(rejected_by_rule.get(r.name, 0)) for r in rules}
    rejected = sum(by_reason.values())
    allowed = math.floor(tolerance * rows_in)
    return CheckOutcome(check, rejected <= allowed, CHECKS_BY_NAME[check].severity, {
        "summary": rule_check_markdown(check, rows_in, by_reason, allowed, sample_lines),
        "rows_rejected": rejected,
        "rows_in": rows_in,
        "rejected_fraction": round(rejected / rows_in, 9) if rows_in else 0.0,
        "tolerance_rows": allowed,
        "rejected_by_reason": by_reason,
        "first_offending_ids": list(offending_ids[:MAX_LISTED]),
        "sample_lines": list(sample_lines[:MAX_LISTED]),
    })


def reconciliation_outcome(rows_in: int, rows_written: int, rows_rejected: int,
                           duplicates_removed: int) -> CheckOutcome:
    accounted = rows_written + rows_rejected + duplicates_removed
    counts = [("rows in", rows_in), ("rows written", rows_written), ("rows quarantined", rows_rejected),
              ("exact duplicates removed", duplicates_removed), ("unaccounted", rows_in - accounted)]
    return CheckOutcome("rows_reconciled", rows_in == accounted, CHECKS_BY_NAME["rows_reconciled"].severity, {
        "summary": Markdown(markdown_table(["rows", "count"], [(name, f"{n:,}") for name, n in counts])),
        "rows_in": rows_in,
        "rows_written": rows_written,
        "rows_rejected": rows_rejected,
        "duplicates_removed": duplicates_removed,
        "unaccounted": rows_in - accounted,
    })


def contiguity_outcome(layout: IdLayout) -> CheckOutcome:
    gaps = layout.gaps
    summary = (f"Trade ids {layout.first_id}..{layout.last_id}: no gap." if not gaps else
               f"{len(gaps):,} gap(s), {layout.missing_ids:,} id(s) missing between {layout.first_id} and "
               f"{layout.last_id}:\n\n" + markdown_table(
                   ["missing ids", "count"],
                   [(f"{g.after_id + 1}..{g.next_id - 1}", f"{g.missing:,}") for g in gaps[:MAX_SHOWN_LINES]]))
    return CheckOutcome("trade_ids_contiguous", not gaps, CHECKS_BY_NAME["trade_ids_contiguous"].severity, {
        "summary": Markdown(summary),
        "gaps": len(gaps),
        "missing_ids": layout.missing_ids,
        "first_id": layout.first_id,
        "last_id": layout.last_id,
        "first_gaps": [f"{g.after_id + 1}..{g.next_id - 1} ({g.missing} missing)" for g in gaps[:MAX_LISTED]],
    })


def rule_check_markdown(check: str, rows_in: int, rejected_by_reason: Mapping[str, int], allowed: int,
                        sample_lines: Sequence[str]) -> Markdown:
    """What a person reads on the check: each rule with its rows and share, then a few quarantined lines."""
    rejected = sum(rejected_by_reason.values())
    verdict = (f"{rejected:,} of {rows_in:,} source rows broke these rules ({share(rejected, rows_in)}); "
               f"tolerance {allowed:,} rows.")
    table = markdown_table(["rule", "rows", "share"],
                           [(f"`{reason}`", f"{n:,}", share(n, rows_in)) for reason, n in rejected_by_reason.items()])
    text = f"{verdict}\n\n{table}"
    if sample_lines:
        shown = list(sample_lines[:MAX_SHOWN_LINES])
        text += f"\n\nFirst {len(shown)} quarantined source line(s):\n\n{code_block(shown)}"
    return Markdown(text)
