"""Issue 14's acceptance soak, CI-sized: 3 concurrent writers of random operations on one partition plus
random SIGKILLs; after every round the catalog is consistent, and after the re-run ``_latest`` equals the
table's item count with nothing left beyond the documented cleanup. The long version:
``benchmarks/publish_soak_benchmark.py`` (``--rounds 50``); ``OFFLOAD_SOAK_ROUNDS`` sizes this one."""

import os

from offload_assets_tests.reliability.publish_soak import run_soak


def test_concurrent_writers_and_sigkills_never_break_the_commit_point(emulator, aws):
    rounds = int(os.environ.get("OFFLOAD_SOAK_ROUNDS", "3"))
    figures = run_soak(emulator.endpoint_url, rounds, seed=14, kill_probability=1.0)
    print("\n".join(figures.lines()))
    assert figures.violations == [], "\n".join(figures.lines())
    assert figures.rounds == rounds and figures.kills >= 1
    assert sum(figures.operations.values()) >= rounds  # the writers did work (killed ones may log nothing)
