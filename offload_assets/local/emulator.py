"""The local AWS emulator: moto's server on a loopback port, started by the project on demand.

State lives in one project-local directory (``.offload_assets/`` by default, or
``$OFFLOAD_ASSETS_HOME``): ``emulator/server.json`` (pid, port), ``emulator/state/``
(everything the emulator holds, written before any request that changed it is answered, so an
acknowledged write survives a SIGKILL of the emulator or a crash of the machine), ``emulator/server.log``.

The server runs detached (its own session), so it outlives the process that started it:
a Dagster run, a sensor tick, the demo and the CLI all share one emulator.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from offload_assets.export.native import PITR_MAX_DAYS

STATE_DIR_ENV_VAR = "OFFLOAD_ASSETS_HOME"
DEFAULT_STATE_DIR = ".offload_assets"
HEALTH_PATH = "/__offload_emulator__/health"
PITR_PATH = "/__offload_emulator__/dynamodb/point-in-time-recovery"


class EmulatorError(RuntimeError):
    """The local emulator could not be started or reached (the message says why and where its log is)."""


@dataclass(frozen=True)
class LocalEmulator:
    pid: int
    port: int
    state_dir: Path

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV_VAR) or DEFAULT_STATE_DIR).resolve()


def emulator_dir(state_dir: str | Path | None = None) -> Path:
    return (Path(state_dir).resolve() if state_dir else default_state_dir()) / "emulator"


def _read_server_file(edir: Path) -> dict | None:
    try:
        return json.loads((edir / "server.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(port: int, pid: int, timeout: float = 2.0) -> bool:
    # The health route echoes the server's pid, so a recycled port is never mistaken for ours.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=timeout) as resp:
            return json.loads(resp.read()).get("pid") == pid
    except (urllib.error.URLError, OSError, ValueError):
        return False


def emulator_status(state_dir: str | Path | None = None) -> LocalEmulator | None:
    """The running emulator for this state directory, or None."""
    edir = emulator_dir(state_dir)
    info = _read_server_file(edir)
    if not info or not _pid_alive(info["pid"]) or not _healthy(info["port"], info["pid"]):
        return None
    return LocalEmulator(pid=info["pid"], port=info["port"], state_dir=edir.parent)


def _port_free(port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _locked(edir: Path):
    edir.mkdir(parents=True, exist_ok=True)
    with open(edir / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_local_emulator(
    state_dir: str | Path | None = None, *, port: int | None = None, timeout: float = 120.0
) -> LocalEmulator:
    """Return the running emulator for ``state_dir``, starting it (restoring saved state) if needed.

    Safe to call from many processes at once: a file lock makes sure only one server starts.
    ``port`` pins the port for a new server; by default the previous port is reused when free
    (so URLs in logs stay valid), else any free loopback port.
    """
    edir = emulator_dir(state_dir)
    running = emulator_status(edir.parent)
    if running:
        return running
    with _locked(edir):
        running = emulator_status(edir.parent)
        if running:
            return running
        previous = _read_server_file(edir) or {}
        if port is None:
            port = previous.get("port") if previous.get("port") and _port_free(previous["port"]) else 0
        (edir / "server.json").unlink(missing_ok=True)
        log_path = edir / "server.log"
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        # The package must be importable by the child even when the caller put it on sys.path by hand.
        package_parent = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p),
        }
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "offload_assets.local.emulator_server",
                    "--state-dir",
                    str(edir),
                    "--port",
                    str(port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlive the caller (dagster run, CLI) and its signals
                close_fds=True,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                with open(log_path, "rb") as fh:
                    fh.seek(log_offset)
                    tail = fh.read()[-3000:].decode(errors="replace")
                raise EmulatorError(f"local AWS emulator exited with code {proc.returncode}; log {log_path}:\n{tail}")
            info = _read_server_file(edir)
            if info and info.get("pid") == proc.pid and _healthy(info["port"], proc.pid):
                return LocalEmulator(pid=proc.pid, port=info["port"], state_dir=edir.parent)
            time.sleep(0.1)
        proc.kill()
        raise EmulatorError(f"local AWS emulator did not answer within {timeout:.0f} s; log {log_path}")


def stop_local_emulator(state_dir: str | Path | None = None, *, timeout: float = 60.0) -> bool:
    """Stop the emulator after it has saved its state. False if none was running."""
    emu = emulator_status(state_dir)
    if emu is None:
        return False
    os.kill(emu.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(emu.pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(emu.pid, os.WNOHANG)
        time.sleep(0.1)
    if _pid_alive(emu.pid):
        os.kill(emu.pid, signal.SIGKILL)
    return True


def reset_local_state(state_dir: str | Path | None = None) -> None:
    """Stop the emulator and forget everything it held (the saved state file is removed)."""
    from offload_assets.local.state_store import forget_state

    stop_local_emulator(state_dir)
    forget_state(emulator_dir(state_dir))


def backdate_point_in_time_recovery(
    endpoint_url: str, table_name: str, *, days: float, region: str | None = None, now: dt.datetime | None = None
) -> dt.datetime:
    """Local emulator only: make ``table_name``'s point-in-time recovery look enabled ``days`` ago.

    moto starts a table's recovery window when PITR is switched on, so a native export of any
    past partition is refused; with this, partitions of the last ``days`` days become exportable,
    as on a table that has had PITR on that long (at most 35 days). PITR is switched on if it
    was off. Only the window changes: the emulator's exports still read the table as it is now,
    whatever export time they are given. Returns the new earliest restorable time.
    """
    host = urllib.parse.urlsplit(endpoint_url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise EmulatorError(
            f"{endpoint_url} is not the local emulator: a point-in-time recovery history can only be made up locally"
        )
    if not 0 < days <= PITR_MAX_DAYS:
        raise EmulatorError(
            f"days must be more than 0 and at most {PITR_MAX_DAYS} (DynamoDB's longest recovery period), not {days}"
        )
    earliest = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    body = json.dumps(
        {"table_name": table_name, "earliest_restorable": earliest.timestamp(), "region": region}
    ).encode()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(
        f"{endpoint_url.rstrip('/')}{PITR_PATH}", method="POST", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with opener.open(req, timeout=60) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        try:
            reason = json.loads(err.read()).get("error") or str(err)
        except ValueError:
            reason = f"{err} (is {endpoint_url} the offload_assets emulator?)"
        raise EmulatorError(reason) from None
    return dt.datetime.fromisoformat(answer["earliest_restorable"])
