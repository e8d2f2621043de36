"""``offload-assets dev`` as a user runs it: the UI comes up, SIGTERM or Ctrl-C (SIGINT) to its process
group stops everything it started (UI, daemon, code server) within seconds, without Dagster's
supersession warning, and the emulator keeps serving."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from offload_assets_tests.ui.dagster_ui import DagsterDev, tail

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_to_the_group_stops_ui_daemon_and_code_server_within_seconds(sig, emulator, aws, tmp_path):
    env = {
        **os.environ,
        "OFFLOAD_ASSETS_HOME": str(emulator.state_dir),  # this test's emulator, not the user's
        "OFFLOAD_ASSETS_TARGET": "local",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    log_path = tmp_path / "dev.log"
    dev = DagsterDev.start_offload_assets_dev(cwd=ROOT, env=env, log_path=log_path)
    process = dev.process
    tree: set[int] = set()
    try:
        # the code server comes up with the workspace: wait until the tree has all three services
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            tree = descendants(process.pid)
            lines = " | ".join(command_line(p) for p in tree)
            if "dagster_webserver" in lines and "dagster._daemon" in lines and "grpc" in lines:
                break
            time.sleep(0.5)
        assert "grpc" in lines and "dagster._daemon" in lines, lines

        started = time.monotonic()
        os.killpg(process.pid, sig)  # what a terminal's Ctrl-C or a service manager's stop sends
        while time.monotonic() - started < 30 and (process.poll() is None or any(alive(p) for p in tree)):
            time.sleep(0.1)
        stopped_after = time.monotonic() - started
        print(f"offload-assets dev and its {len(tree)} processes stopped {stopped_after:.1f} s after {sig.name}")
        left = {p: command_line(p) for p in tree if alive(p)}
        assert process.poll() is not None and not left, f"still running after {stopped_after:.1f} s: {left}"
        assert stopped_after < 10, f"stopping took {stopped_after:.1f} s"
        assert process.returncode == 0, tail(log_path)
        output = log_path.read_text(errors="replace")
        assert "dg dev" not in output and "SupersessionWarning" not in output, output[-3000:]
        assert isinstance(aws.client("dynamodb").list_tables()["TableNames"], list)  # the emulator still serves
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in tree | descendants(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)
