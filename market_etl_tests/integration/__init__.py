"""Integration tests through real runs: stages as subprocesses, Dagster runs, moto S3/Glue, the mirror server."""
