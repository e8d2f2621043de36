"""``offload-assets dev``: run ``dagster dev`` (UI, daemon, code server) and stop all of it on request.

``dagster dev`` is run as a child in its own session (process group), not exec'd: on Ctrl-C or
SIGTERM this process asks it to shut down through its ``--shutdown-pipe`` (it then stops the UI and
the daemon, which stop their code servers), and after ``grace_seconds`` kills whatever of that
group is left. Run alone, ``dagster dev`` waits up to 60 s per service and, started from a script,
ignores signals it inherited as ignored: SIGTERM to its group left it running for more than 40 s.
The local emulator runs in a session of its own (:mod:`offload_assets.local.emulator`), so
stopping the UI never cuts it off mid-write; its state stays as saved.

``dagster dev`` warns on every start that ``dg dev`` supersedes it. ``dg`` is the CLI of
``dagster-dg-cli``, a separate package this project does not install, and ``dagster dev`` still
works unchanged in 1.13: that one warning category is filtered, nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: ``python -m dagster`` with Dagster's supersession warning filtered. (``-W`` cannot name the
#: category: Python parses it before site-packages are importable.)
_DAGSTER_MAIN = (
    "import runpy, warnings\n"
    "from dagster import SupersessionWarning\n"
    "warnings.filterwarnings('ignore', category=SupersessionWarning)\n"
    "runpy.run_module('dagster', run_name='__main__', alter_sys=True)\n"
)
#: What ``dagster dev`` reads on its shutdown pipe (dagster_shared.ipc._PIPE_SHUTDOWN_INDICATOR).
_SHUTDOWN_MESSAGE = b"SHUTDOWN\n"


def dagster_dev_command(workspace: Path, host: str, port: int, shutdown_fd: int) -> list[str]:
    return [
        sys.executable,
        "-c",
        _DAGSTER_MAIN,
        "dev",
        "-w",
        str(workspace),
        "-h",
        host,
        "-p",
        str(port),
        "--shutdown-pipe",
        str(shutdown_fd),
    ]


def run_dagster_dev(workspace: Path, *, host: str = "127.0.0.1", port: int = 3000, grace_seconds: float = 6.0) -> int:
    """Run ``dagster dev`` until it exits or this process gets SIGINT/SIGTERM; returns its exit code."""
    read_fd, write_fd = os.pipe()
    child = subprocess.Popen(
        dagster_dev_command(workspace, host, port, read_fd), pass_fds=[read_fd], start_new_session=True
    )
    os.close(read_fd)
    stop_requested: list[int] = []

    def request_stop(signum: int, _frame) -> None:
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while child.poll() is None and not stop_requested:
            time.sleep(0.2)
        if child.poll() is None:
            stop_dagster_dev(child, write_fd, grace_seconds)
            write_fd = -1
        return 128 + stop_requested[0] if stop_requested else child.returncode
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if write_fd >= 0:
            os.close(write_fd)


def stop_dagster_dev(child: subprocess.Popen, shutdown_fd: int, grace_seconds: float) -> None:
    """Ask ``dagster dev`` to stop (its shutdown pipe), then kill its process group after the grace period."""
    try:
        os.write(shutdown_fd, _SHUTDOWN_MESSAGE)
    except OSError:
        pass
    finally:
        os.close(shutdown_fd)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and _group_alive(child.pid):
        child.poll()
        time.sleep(0.1)
    if _group_alive(child.pid):  # the UI, the daemon or a code server still shutting down: stop them now
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    child.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
