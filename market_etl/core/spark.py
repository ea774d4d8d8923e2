"""The SparkSession settings every Spark entry point uses (locally and on Glue)."""
from __future__ import annotations


def build_spark_session(app_name: str, master: str | None = "local[*]", shuffle_partitions: int | None = None,
                        extra_conf: dict[str, str] | None = None):
    """`extra_conf`: settings a job needs at launch (JVM options, memory); they win over the defaults."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    conf = {
        # INT96 timestamps carry no min/max statistics: readers could not prune on trade_time.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # Replace only the partitions a job writes; never the siblings.
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.compression.codec": "snappy",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "2g",
    }
    if shuffle_partitions:
        conf["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
