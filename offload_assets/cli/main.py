"""``offload-assets``: the demo, SQL, exports, conversions, the local emulator and the Dagster UI.

Exit codes (scripts may rely on them):

====  ==========================================================================================
0     success
1     the operation failed: AWS, the query, the export or the conversion said no (reason on stderr)
2     bad usage: unknown command or option, a missing input, an unknown table, an invalid tables file
3     ``local status``: the local emulator is not running
130   interrupted (Ctrl-C)
====  ==========================================================================================

Results go to standard output; progress, notes and errors to standard error.
"""

from __future__ import annotations

import argparse
import os
import sys

from offload_assets.aws.connection import TARGET_ENV_VAR
from offload_assets.cli import cdc, convert, export, iam, local, query
from offload_assets.cli.common import (  # noqa: F401 (the exit codes are part of this module's interface)
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    _HelpFormatter,
    print_error,
)
from offload_assets.cli.deploy import add_deploy_parser
from offload_assets.local.emulator import STATE_DIR_ENV_VAR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offload-assets",
        description=(
            "Offload DynamoDB tables to S3 as Parquet, register them in Glue, and query them with SQL.\n\n"
            f"Where: {TARGET_ENV_VAR}=local (default: a local AWS emulator on this machine, DuckDB for SQL)\n"
            f"       or {TARGET_ENV_VAR}=aws (boto3's usual credentials and region; Athena for SQL).\n"
            f"Local state (emulator data, Dagster runs) lives in ${STATE_DIR_ENV_VAR} (default ./.offload_assets).\n"
            "Which tables: tables.yaml (one entry per DynamoDB table; see README)."
        ),
        epilog=(
            "a first session:\n"
            "  offload-assets demo                      # seed Reviews locally, run its Dagster job, answer the blog's query\n"
            "  offload-assets dev                       # the Dagster UI on http://127.0.0.1:3000\n"
            "  offload-assets query 'SELECT author, count(*) FROM reviews GROUP BY 1'\n"
            "  offload-assets export status             # what is exported, converted and registered, per table\n\n"
            "`offload-assets COMMAND --help` explains each command, with examples.\n\n"
            f"{EXIT_CODES_HELP}"
        ),
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for add_parser in (
        local.add_demo_parser,
        query.add_query_parser,
        export.add_export_parser,
        convert.add_convert_parser,
        iam.add_iam_parser,
        local.add_local_parser,
        local.add_dev_parser,
        add_deploy_parser,
        cdc.add_cdc_parser,
    ):
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print_error(f"offload-assets {args.command}: error: {err}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:  # the reason, not a traceback, for operational failures
        if os.environ.get("OFFLOAD_ASSETS_DEBUG"):
            raise
        print_error(f"error: {type(err).__name__}: {err}")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
