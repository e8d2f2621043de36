"""Table of contents: one set of definitions per table in the tables file, plus the resources.

Importing this module builds nothing (the code location's ``defs`` is built in
:mod:`offload_assets.definitions`): a process that builds its own definitions from another tables
file does not load the default one, nor record its tables' first-seen days.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from offload_assets.defs.resources import default_resources
from offload_assets.defs.table_assets import build_table_definitions
from offload_assets.table_spec import default_tables_file, load_tables_file

#: ``$OFFLOAD_ASSETS_TABLES``, else the checkout's tables.yaml (see ``default_tables_file``).
TABLES_FILE = default_tables_file()


def build_definitions(tables_file: str | Path = TABLES_FILE, **resource_overrides) -> dg.Definitions:
    tables = load_tables_file(tables_file)
    return dg.Definitions.merge(
        *(build_table_definitions(spec) for spec in tables.tables),
        # Each run's steps in one process: the steps of a partition run one after another anyway
        # (export, convert and check, publish), and a process per step costs ~6 s on 2 cores.
        dg.Definitions(resources=default_resources(**resource_overrides), executor=dg.in_process_executor),
    )
