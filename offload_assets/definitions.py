"""The code location Dagster loads (``workspace.yaml``, ``[tool.dagster]``): one set of definitions per
table in the tables file, plus the resources. Built by :mod:`offload_assets.defs.definitions`, so
only ``defs/`` and ``cli/`` import Dagster; importing this module loads the default tables file
(``$OFFLOAD_ASSETS_TABLES`` or the checkout's tables.yaml): code that builds definitions from its own
tables file imports ``build_definitions`` from :mod:`offload_assets.defs.definitions` instead."""

from offload_assets.defs.definitions import TABLES_FILE, build_definitions

defs = build_definitions()

__all__ = ["TABLES_FILE", "build_definitions", "defs"]
