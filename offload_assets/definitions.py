"""The code location Dagster loads (``workspace.yaml``, ``[tool.dagster]``): one set of definitions per
table in the tables file, plus the resources. Built in :mod:`offload_assets.defs.definitions`, so
only ``defs/`` and ``cli/`` import Dagster."""

from offload_assets.defs.definitions import TABLES_FILE, build_definitions, defs

__all__ = ["TABLES_FILE", "build_definitions", "defs"]
