"""Versions of the transforms: part of each partition's data version and the assets' code_version.

Bump one when its stage writes something different for the same input: the UI then marks the
partitions built by the older transform as changed code.
"""

#: The Spark ETL (market_etl.stages.etl): what processed/trades holds for a given source file.
TRANSFORM_VERSION = "1"
