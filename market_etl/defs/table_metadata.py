"""Definition metadata of a table asset, from its one declaration in core.tables: what the UI shows as the
asset's columns (`dagster/column_schema`), the SQL table it is queried as (`dagster/table_name`) and, where
known, where its files live (`dagster/uri`)."""

import dagster as dg

from market_etl.core.tables import TableSpec
from market_etl.core.metadata import COLUMN_SCHEMA, TABLE_NAME, URI


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
