"""Definition metadata of a table asset, from its one declaration in core.catalog: what the UI shows as the
asset's columns (`dagster/column_schema`), the SQL table it is queried as (`dagster/table_name`) and, where
known, where its files live (`dagster/uri`)."""

import dagster as dg

from market_etl.core.catalog import DATABASE, CatalogTable
from market_etl.core.metadata import COLUMN_SCHEMA, TABLE_NAME, URI


def column_schema(table: CatalogTable) -> dg.TableSchema:
    """The table's columns in file order, then its partition keys (directory names in the lake)."""
    return dg.TableSchema(columns=[dg.TableColumn(name, sql_type) for name, sql_type in table.columns]
                          + [dg.TableColumn(name, sql_type, description="partition key (directory name)")
                             for name, sql_type in table.partition_keys])


def table_metadata(table: CatalogTable, uri: str | None = None) -> dict:
    metadata = {COLUMN_SCHEMA: column_schema(table), TABLE_NAME: f"{DATABASE}.{table.name}"}
    if uri:
        metadata[URI] = uri
    return metadata
