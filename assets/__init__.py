"""The Dagster code location: a thin layer over `pipeline/`."""

from pipeline.allocator import choose_system_allocator

choose_system_allocator()  # a code location's process: before anything imports pyarrow
