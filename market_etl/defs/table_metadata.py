"""Definition metadata of a table asset, from its one declaration in core.tables: what the UI shows as the
asset's columns (`dagster/column_schema`), the SQL table it is queried as (`dagster/table_name`) and, where
known, where its files live (`dagster/uri`)."""

from typing import Any, Mapping

import dagster as dg

from market_etl.core.tables import TableSpec
from market_etl.core.metadata import COLUMN_SCHEMA, TABLE_NAME, URI, ColumnSchema, Markdown, Table, Url


def column_schema(table: TableSpec) -> dg.TableSchema:
    """The table's columns in file order: its data columns, then its partition columns."""
    return dg.TableSchema(columns=[dg.TableColumn(name, sql_type) for name, sql_type in table.data_columns]
                          + [dg.TableColumn(name, sql_type, description="partition column (also in every file)")
                             for name, sql_type in table.partition_columns])


def table_metadata(table: TableSpec, uri: str | None = None) -> dict:
    metadata = {COLUMN_SCHEMA: column_schema(table), TABLE_NAME: table.qualified_name}
    if uri:
        metadata[URI] = uri
    return metadata


def dagster_metadata(metadata: Mapping[str, Any]) -> dict:
    """`core.metadata` values as Dagster's (what Pipes does for a stage's report, for results built in process)."""
    def value(v):
        if isinstance(v, Markdown):
            return dg.MarkdownMetadataValue(str(v))
        if isinstance(v, Url):
            return dg.MetadataValue.url(v.url)
        if isinstance(v, ColumnSchema):
            return dg.TableSchema(columns=[dg.TableColumn(name, sql_type) for name, sql_type in v.columns])
        if isinstance(v, Table):
            names = [name for name, _ in v.columns]
            return dg.MetadataValue.table(
                records=[dg.TableRecord(dict(zip(names, row))) for row in v.rows],
                schema=dg.TableSchema(columns=[dg.TableColumn(name, sql_type) for name, sql_type in v.columns]))
        if isinstance(v, (dict, list, tuple)):
            return dg.MetadataValue.json(v)
        return v
    return {k: value(v) for k, v in metadata.items()}
