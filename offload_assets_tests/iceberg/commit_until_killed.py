"""Child process of the mid-commit SIGKILL test: publishes a partition and stops inside the catalog commit.

Every data file, manifest and manifest list of the commit is written to S3 when pyiceberg calls
the Glue catalog's ``commit_table``; there this process writes MARKER and waits to be killed.

Usage: python -m offload_assets_tests.iceberg.commit_until_killed ENDPOINT PARTITION MARKER
"""

import sys
import time
from pathlib import Path

from pyiceberg.catalog.glue import GlueCatalog

from offload_assets.aws.connection import resolve_connection
from offload_assets_tests.iceberg.pipeline import make_spec, publish_partition


def main(argv: list[str]) -> int:
    endpoint, partition, marker = argv

    def commit_table(self, table, requirements, updates):
        Path(marker).write_text("data files written, committing\n")
        time.sleep(600)  # killed here, between the data write and the catalog commit
        raise SystemExit("not killed")

    GlueCatalog.commit_table = commit_table
    aws = resolve_connection(target="local", endpoint_url=endpoint)
    publish_partition(aws, make_spec(), partition)
    print("finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
