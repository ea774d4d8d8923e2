"""The Iceberg catalog as a Dagster resource: the local SQL catalog or Glue, chosen when resources are built."""
from __future__ import annotations

import dagster as dg

from market_etl.lake import Lake, open_lake
from market_etl.lake.iceberg import Commit, open_catalog, publish_staged, record_quarantine


class IcebergCatalogResource(dg.ConfigurableResource):
    """Where the lake's Iceberg tables are catalogued: SQLite in the lake (local) or the Glue Data Catalog (aws).

    `glue_endpoint_url` / `s3_endpoint_url` point the clients at endpoints other than AWS's (moto in tests).
    """

    lake_url: str
    glue: bool = False
    region: str | None = None
    glue_endpoint_url: str | None = None
    s3_endpoint_url: str | None = None

    def lake(self) -> Lake:
        return open_lake(self.lake_url, s3_endpoint_url=self.s3_endpoint_url, region=self.region)

    def catalog(self):
        return open_catalog(self.lake(), glue=self.glue, region=self.region,
                            glue_endpoint_url=self.glue_endpoint_url, s3_endpoint_url=self.s3_endpoint_url)

    def publish(self, manifest_key: str, dagster_run_id: str | None) -> Commit:
        return publish_staged(self.catalog(), self.lake(), manifest_key, dagster_run_id)

    def record_quarantine(self, manifest_key: str, dagster_run_id: str | None) -> Commit | None:
        return record_quarantine(self.catalog(), self.lake(), manifest_key, dagster_run_id)
