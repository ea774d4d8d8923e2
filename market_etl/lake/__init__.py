"""Lake storage: a local directory or an S3 prefix, behind one interface.

Both kinds make a write visible only when it is complete: the local lake
writes to a hidden temporary file and renames it into place; the S3 lake
uploads parts and completes the multipart upload only on commit, aborting it
on every failure path. Each object can carry a small JSON sidecar
(`<key>.meta.json`) holding its data version (sha256, source, ...).
"""
from __future__ import annotations

from market_etl.lake.base import Lake, LakeWriter, ObjectInfo
from market_etl.lake.local import LocalLake
from market_etl.lake.s3 import S3Lake, parse_s3_url


def open_lake(url: str, *, s3_endpoint_url: str | None = None, region: str | None = None) -> Lake:
    """`s3://bucket/prefix` -> S3Lake; anything else is a local directory."""
    if url.startswith("s3://"):
        bucket, prefix = parse_s3_url(url)
        return S3Lake(bucket, prefix, endpoint_url=s3_endpoint_url, region=region)
    return LocalLake(url)


__all__ = ["Lake", "LakeWriter", "LocalLake", "ObjectInfo", "S3Lake", "open_lake"]
