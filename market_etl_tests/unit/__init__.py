"""Unit tests of core: pure functions, no servers, no Dagster runs (Spark transforms on the shared session)."""
