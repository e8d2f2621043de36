"""Parquet snapshots: building one from an export, publishing it, checking it."""
