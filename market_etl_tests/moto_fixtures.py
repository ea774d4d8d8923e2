"""Helpers for moto's server (the S3, Glue and Athena stand-in the tests talk to)."""
from __future__ import annotations

import requests

REGION = "us-east-1"


def seed_athena_result(moto_endpoint: str, columns: list[tuple[str, str, int, int]], rows: list[list[str]]) -> None:
    """moto's Athena answers the next query whose results are fetched with these rows (it never runs SQL).
    `columns` are (name, Athena type, precision, scale); values are given as Athena returns them, as text."""
    info = [{"Name": n, "Type": t, "Precision": p, "Scale": s, "Nullable": "UNKNOWN"} for n, t, p, s in columns]
    result_rows = [{"Data": [{"VarCharValue": c["Name"]} for c in info]}] + [
        {"Data": [{"VarCharValue": v} for v in row]} for row in rows]
    requests.post(f"{moto_endpoint}/moto-api/static/athena/query-results", timeout=10,
                  json={"region": REGION, "results": [{"rows": result_rows, "column_info": info}]}).raise_for_status()
