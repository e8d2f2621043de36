"""Child process for the SIGKILL test: a slow, checkpointing scan export that the test kills mid-way.

Usage: python -m offload_assets_tests.export.scan_until_killed ENDPOINT TABLE BUCKET PREFIX EXPORT_TIME RATE
"""

import sys

from offload_assets.aws.connection import resolve_connection
from offload_assets.export.scan import export_table_scan


def main(argv: list[str]) -> int:
    endpoint, table, bucket, prefix, export_time, rate = argv
    aws = resolve_connection(target="local", endpoint_url=endpoint)
    export_table_scan(
        aws.client("dynamodb"),
        aws.client("s3"),
        table_name=table,
        bucket=bucket,
        export_prefix=prefix,
        export_time=export_time,
        total_segments=4,
        page_limit=25,
        rate_limit=float(rate),
        capacity_source="estimated",
        checkpoint_seconds=0,  # record every page, so the kill lands between checkpoints
    )
    print("finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
