"""The Dagster code location: a thin layer over `pipeline/`."""
