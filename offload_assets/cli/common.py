"""What every command group shares: exit codes, usage errors, consoles, the tables file, the
Dagster home, the help layout."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import zoneinfo
from pathlib import Path

from offload_assets.local.emulator import default_state_dir

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


EXIT_CODES_HELP = """exit codes:
  0    success
  1    the operation failed (the reason is printed on stderr)
  2    bad usage: unknown command or option, missing input, unknown table, invalid tables file
  3    local status: the emulator is not running
  130  interrupted"""


class UsageError(Exception):
    """The command line (or the tables file it points to) is wrong; nothing was done."""


def make_console(stderr: bool = False):
    from rich.console import Console

    # Piped output gets no colour codes and no wrapping, so columns stay aligned in a file.
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if probe.is_terminal else 10_000)


def print_error(message: str) -> None:
    print(message, file=sys.stderr)


DAGSTER_YAML = """# Dagster instance of offload_assets' local mode (runs, materializations, schedules).
# Telemetry is off: the embedded default never talks to anything but loopback.
telemetry:
  enabled: false
# Every raw export asset is in pool "dynamodb_export": at most two exports run at a time,
# so a multi-day backfill queues its exports instead of starting them all at once.
concurrency:
  pools:
    default_limit: 2
    granularity: op
"""


def prepare_dagster_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def dagster_home() -> Path:
    """The Dagster instance the demo and ``offload-assets dev`` share, so demo runs show in the UI."""
    home = Path(os.environ.get("DAGSTER_HOME") or default_state_dir() / "dagster_home")
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(home))
    return home


def load_tables(path: str | None):
    from offload_assets.table_spec import TablesFileError, default_tables_file, load_tables_file

    try:
        return load_tables_file(path or default_tables_file())
    except TablesFileError as err:
        raise UsageError(str(err)) from None


def select_tables(tables, names: list[str] | None):
    if not names:
        return list(tables.tables)
    try:
        return [tables.table(name) for name in names]
    except KeyError as err:
        raise UsageError(err.args[0]) from None


def current_partition_key(spec, now: dt.datetime | None = None) -> str:
    """Today's partition of ``spec``: the day whose export hour (in the table's timezone) has passed most recently.

    The same key as the last partition of the table's Dagster partitions definition.
    """
    now = now or dt.datetime.now(dt.UTC)
    local = now.astimezone(zoneinfo.ZoneInfo(spec.timezone))
    return (local - dt.timedelta(hours=spec.export_hour)).date().isoformat()


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def add_command(sub, name: str, *, help: str, description: str, examples: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=_HelpFormatter,
        epilog=f"examples:\n{examples.rstrip()}\n\n{EXIT_CODES_HELP}",
        **kwargs,
    )


def tables_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tables",
        metavar="FILE",
        default=None,
        help="tables file (default: $OFFLOAD_ASSETS_TABLES, else the project's tables.yaml: the one Dagster loads)",
    )
