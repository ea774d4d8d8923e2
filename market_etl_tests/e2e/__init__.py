"""End-to-end tests through a real `dagster dev` webserver and daemon."""
