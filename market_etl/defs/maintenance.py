"""Table maintenance: a scheduled job expiring old snapshots and deleting files no snapshot references."""

import datetime as dt

import dagster as dg

from market_etl.core.tables import TABLES
from market_etl.lake.iceberg import delete_expired_scratch, maintain
from market_etl.resources.catalog import IcebergCatalogResource
from market_etl.resources.sql import SqlEngine

MAINTENANCE_JOB = "table_maintenance"


def build_maintenance(retention_days: float, grace_days: float, cron: str = "30 3 * * *"):
    @dg.op(description=(
        f"For every Iceberg table: expire snapshots older than {retention_days:g} days (never the current one), "
        f"then delete data files that no remaining snapshot references once they are older than {grace_days:g} "
        "days (a run that has not committed yet, or a query on a just-expired snapshot, keeps its files); also "
        "scratch output of killed runs. Reports snapshots expired, files and bytes deleted."))
    def expire_and_collect(context: dg.OpExecutionContext, catalog: IcebergCatalogResource, sql: SqlEngine):
        iceberg, lake = catalog.catalog(), catalog.lake()
        retention, grace = dt.timedelta(days=retention_days), dt.timedelta(days=grace_days)
        totals = {"snapshots_expired": 0, "files_deleted": 0, "bytes_deleted": 0}
        for spec in TABLES.values():
            report = maintain(iceberg, lake, spec, retention=retention, grace=grace)
            context.log.info(f"{spec.qualified_name}: {report.metadata()}")
            for key in totals:
                totals[key] += getattr(report, key)
        scratch_files, scratch_bytes = delete_expired_scratch(lake, grace)
        totals["files_deleted"] += scratch_files
        totals["bytes_deleted"] += scratch_bytes
        sql.refresh_views(iceberg)
        context.add_output_metadata(totals)
        return totals

    @dg.job(name=MAINTENANCE_JOB, description="Expire old Iceberg snapshots and delete unreferenced files.")
    def table_maintenance():
        expire_and_collect()

    schedule = dg.ScheduleDefinition(job=table_maintenance, cron_schedule=cron, execution_timezone="UTC",
                                     default_status=dg.DefaultScheduleStatus.RUNNING)
    return table_maintenance, schedule
