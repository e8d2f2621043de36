"""The long soak of the publish protocol (issue 14's acceptance): N rounds of 3 concurrent writers of
random operations on one partition (export, convert, publish, catalog-only publish, retention) with
random SIGKILLs of writer processes, checking after every round that ``_latest`` equals the table's
item count, every Glue location exists and no orphan run dir is left beyond the documented cleanup
(``docs/publish-protocol.md``). Prints rounds, kills, publishes, races lost and re-decided, seconds.

Run from the repository root (it starts its own emulator in a temporary directory):

    .venv/bin/python benchmarks/publish_soak_benchmark.py --rounds 50

The CI-sized version is ``offload_assets_tests/reliability/test_publish_soak.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from offload_assets_tests.reliability.publish_soak import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
