"""Child process for the mid-conversion SIGKILL test: builds a Parquet snapshot until the test kills it.

Usage: python -m offload_assets_tests.reliability.convert_until_killed ENDPOINT TABLES_FILE PARTITION
"""

import sys

from offload_assets.aws.connection import resolve_connection
from offload_assets.snapshot.build import build_snapshot
from offload_assets.table_spec import load_tables_file


def main(argv: list[str]) -> int:
    endpoint, tables_file, partition = argv
    aws = resolve_connection(target="local", endpoint_url=endpoint)
    spec = load_tables_file(tables_file).tables[0]
    build_snapshot(aws.client("s3"), aws.arrow_filesystem(), aws.client("glue"), spec, partition, run_id="killed")
    print("finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
