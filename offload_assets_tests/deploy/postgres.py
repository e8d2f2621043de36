"""A throwaway PostgreSQL server for tests: Debian's ``postgresql`` binaries, a temporary data directory,
a free loopback port, password authentication, gone when the test ends.

``postgres`` refuses to run as root, so as root the server (and ``initdb``) run as the ``postgres``
system user that Debian's package creates, else as ``nobody``; the data directory is made in the
system's temporary directory (pytest's own is private to root) and handed to that user.
``scripts/install-system-deps`` installs the package when no ``initdb`` is found.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD, DATABASE = "dagster", "offload-test-only", "dagster"


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if not found:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql: run scripts/install-system-deps")
    return Path(found[-1]).parent


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    log: Path

    def dagster_env(self) -> dict[str, str]:
        """The environment deploy/dagster.yaml reads its connection from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.database,
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def connect(self, database: str | None = None):
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=5,
        )


def _run_as() -> dict:
    """subprocess arguments that drop root for postgres (which refuses to run as root); nothing otherwise."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            account = pwd.getpwnam(name)
            return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


@contextlib.contextmanager
def running_postgres(timeout: float = 60.0) -> Iterator[PostgresServer]:
    """initdb + postgres on a free loopback port; yields once a database ``dagster`` accepts connections."""
    bin_dir = postgres_bin_dir()
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="offload-assets-pg-"))
    proc = None
    try:
        if as_user:
            os.chown(root, as_user["user"], as_user["group"])
        data, password_file, log = root / "data", root / "password", root / "postgres.log"
        password_file.write_text(PASSWORD + "\n")
        if as_user:
            os.chown(password_file, as_user["user"], as_user["group"])
        initdb = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=root,
            **as_user,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stdout}\n{initdb.stderr}")
        port = free_loopback_port()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-h",
                    "127.0.0.1",  # loopback only
                    "-p",
                    str(port),
                    "-k",
                    str(root),  # its Unix socket beside the data, not in /var/run/postgresql
                    "-c",
                    "fsync=off",  # a test database: durability is not what is tested
                    "-c",
                    "max_connections=100",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=root,
                start_new_session=True,
                **as_user,
            )
        server = PostgresServer("127.0.0.1", port, USER, PASSWORD, DATABASE, log)
        _wait_until_ready(server, proc, timeout)
        with contextlib.closing(server.connect("postgres")) as conn:
            conn.autocommit = True
            conn.cursor().execute(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_ready(server: PostgresServer, proc: subprocess.Popen, timeout: float) -> None:
    import psycopg2

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode}: {server.log.read_text(errors='replace')}")
        try:
            server.connect("postgres").close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT is PostgreSQL's fast shutdown; SIGKILL the group if it does not stop."""
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
