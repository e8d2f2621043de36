"""Process entry point of the local AWS emulator (see :mod:`offload_assets.local.emulator`).

Runs moto's WSGI application on 127.0.0.1 with persistence added around it: moto keeps its
state in memory only, so the backends of the services we use are pickled to
``state.pickle`` shortly after every change and at shutdown, and restored at start.
That relies on moto internals, which is why moto is pinned to one version in pyproject.toml
and tested by ``offload_assets_tests/local/test_local_emulator.py``.

Besides moto's own routes it serves a few of its own under ``/__offload_emulator__/`` (loopback
clients only; they exist only here, never on AWS): health, save, and
``dynamodb/point-in-time-recovery``, which gives a table a point-in-time recovery history
(PITR enabled N days ago), so native exports of past days can be tried locally.
"""

from __future__ import annotations

import argparse
import copyreg
import datetime as dt
import json
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

from offload_assets.export.native import PITR_MAX_DAYS

PERSISTED_SERVICES = ("dynamodb", "s3", "glue", "athena", "sns", "sqs", "sts", "iam")
HEALTH_PATH = "/__offload_emulator__/health"
SAVE_PATH = "/__offload_emulator__/save"
PITR_PATH = "/__offload_emulator__/dynamodb/point-in-time-recovery"
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


class RouteError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _restore_background_job(cls, state):
    """A moto export/import thread as it was saved: its data, never a thread to start again."""
    import threading

    job = cls.__new__(cls)
    threading.Thread.__init__(job, daemon=True)
    job.__dict__.update(state)
    if getattr(job, "status", None) == "IN_PROGRESS":  # its thread died with the previous server
        job.status, job.failure_code = "FAILED", "EmulatorRestarted"
        job.failure_message = "the local emulator stopped while this job was running; start it again"
    return job


def _reduce_background_job(job):
    return _restore_background_job, (type(job), {k: v for k, v in vars(job).items() if not k.startswith("_")})


def register_background_job_pickling() -> None:
    """moto runs DynamoDB exports and imports as Thread objects kept in its backend, and a thread
    cannot be pickled: without this, saving the state fails for good after the first native export."""
    from moto.dynamodb.models.table_export import TableExport
    from moto.dynamodb.models.table_import import TableImport

    # By module name, not __main__: the saved state must name functions any process can import.
    from offload_assets.local.emulator_server import _reduce_background_job as reduce

    for cls in (TableExport, TableImport):
        copyreg.pickle(cls, reduce)


def backdate_point_in_time_recovery(table_name: str, earliest_restorable: float, region: str | None = None) -> dict:
    """Make ``table_name``'s point-in-time recovery look enabled since ``earliest_restorable`` (epoch seconds).

    moto records the moment PITR is switched on as the earliest restorable time, so every past
    instant is refused by a native export; this gives the table a history like a real one. It
    changes only what DescribeContinuousBackups reports: moto's exports still read the table as it
    is now, whatever ExportTime asks for.
    """
    from moto.backends import get_backend

    now = time.time()
    if not now - PITR_MAX_DAYS * 86400 - 60 <= earliest_restorable <= now:
        raise RouteError(
            "400 Bad Request",
            (
                f"earliest_restorable {earliest_restorable!r} must lie within the last {PITR_MAX_DAYS} days "
                "(DynamoDB's longest point-in-time recovery period)"
            ),
        )
    found = [
        (account_id, region_name, backend.tables[table_name])
        for account_id, regions in get_backend("dynamodb").items()
        for region_name, backend in regions.items()
        if table_name in backend.tables and region in (None, region_name)
    ]
    if not found:
        raise RouteError(
            "404 Not Found",
            (
                f"DynamoDB table {table_name!r} does not exist in the local emulator"
                + (f" (region {region})" if region else "")
            ),
        )
    if len(found) > 1:
        raise RouteError(
            "409 Conflict",
            (
                f"DynamoDB table {table_name!r} exists in several accounts/regions of the local emulator "
                f"({', '.join(f'{a}/{r}' for a, r, _ in found)}): name the region"
            ),
        )
    account_id, region_name, table = found[0]
    was = table.continuous_backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
    table.continuous_backups["ContinuousBackupsStatus"] = "ENABLED"
    table.continuous_backups["PointInTimeRecoveryDescription"] = {
        "PointInTimeRecoveryStatus": "ENABLED",
        "EarliestRestorableDateTime": earliest_restorable,
        "LatestRestorableDateTime": now,
    }
    return {
        "table_name": table_name,
        "account_id": account_id,
        "region": region_name,
        "previous_status": was,
        "earliest_restorable": dt.datetime.fromtimestamp(earliest_restorable, dt.UTC).isoformat(),
    }


SAVE_IDLE_SECONDS = 1.0  # save once requests pause this long...
SAVE_MAX_DELAY_SECONDS = 15.0  # ...or at the latest this long after the first unsaved change


class _StateUnpickler(pickle.Unpickler):
    """Reads state saved before the package was split into subpackages (this module was
    ``offload_assets.local_emulator_server``), so an existing ``state.pickle`` survives the move."""

    def find_class(self, module: str, name: str):
        if module == "offload_assets.local_emulator_server":
            module = "offload_assets.local.emulator_server"
        return super().find_class(module, name)


class PersistentEmulator:
    def __init__(self, state_dir: Path) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.state_dir = state_dir
        self.state_file = state_dir / "state.pickle"
        self.lock = threading.Lock()  # held by each request and by a snapshot: a snapshot is consistent
        self.dirty_since: float | None = None
        self.last_request = time.monotonic()
        self.app = DomainDispatcherApplication(create_backend_app)

    # --- persistence -------------------------------------------------------------------
    def restore(self) -> None:
        from moto.backends import get_backend

        if not self.state_file.exists():
            return
        with open(self.state_file, "rb") as fh:
            saved = _StateUnpickler(fh).load()
        for name, backend_dict in saved.items():
            live = get_backend(name)
            live.clear()
            live.update(backend_dict)
        print(f"restored state from {self.state_file}", flush=True)

    def save(self) -> None:
        from moto.backends import get_backend

        with self.lock:
            data = pickle.dumps(
                {name: get_backend(name) for name in PERSISTED_SERVICES}, protocol=pickle.HIGHEST_PROTOCOL
            )
            self.dirty_since = None
        tmp = self.state_file.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_file)

    def saver_loop(self) -> None:
        while True:
            time.sleep(0.5)
            since = self.dirty_since
            if since is None:
                continue
            now = time.monotonic()
            if now - self.last_request >= SAVE_IDLE_SECONDS or now - since >= SAVE_MAX_DELAY_SECONDS:
                try:
                    self.save()
                except Exception as err:  # keep serving; report loudly in the log
                    print(f"saving emulator state failed: {err!r}", file=sys.stderr, flush=True)

    # --- our own routes ---------------------------------------------------------------------
    def point_in_time_recovery(self, environ) -> dict:
        if environ.get("REQUEST_METHOD") != "POST":
            raise RouteError("405 Method Not Allowed", f"POST a JSON body to {PITR_PATH}")
        if environ.get("REMOTE_ADDR") not in LOOPBACK_ADDRESSES:
            raise RouteError("403 Forbidden", f"{PITR_PATH} answers loopback clients only")
        try:
            body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
            table_name, earliest = str(body["table_name"]), float(body["earliest_restorable"])
        except (KeyError, TypeError, ValueError) as err:
            raise RouteError(
                "400 Bad Request",
                (
                    f'{PITR_PATH} expects JSON {{"table_name": ..., "earliest_restorable": <epoch seconds>, '
                    f'"region": optional}}: {err!r}'
                ),
            ) from None
        with self.lock:
            answer = backdate_point_in_time_recovery(table_name, earliest, body.get("region"))
            self.last_request = time.monotonic()
            self.dirty_since = self.dirty_since or time.monotonic()
        return answer

    # --- WSGI --------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == PITR_PATH:
            try:
                status, answer = "200 OK", self.point_in_time_recovery(environ)
            except RouteError as err:
                status, answer = err.status, {"error": str(err)}
            body = json.dumps(answer).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path == HEALTH_PATH:
            body = json.dumps({"pid": os.getpid(), "state_dir": str(self.state_dir)}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if path == SAVE_PATH:
            self.save()
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        with self.lock:
            self.last_request = time.monotonic()
            if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") and self.dirty_since is None:
                self.dirty_since = time.monotonic()
            # Materialise the body while holding the lock so a snapshot never sees half a request.
            return list(self.app(environ, start_response))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)

    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code="-", size="-"):  # one line per request would grow the log forever
            pass

    register_background_job_pickling()
    emulator = PersistentEmulator(args.state_dir)
    emulator.restore()
    server = make_server("127.0.0.1", args.port, emulator, threaded=True, request_handler=QuietHandler)
    port = server.server_address[1]

    def shutdown(signum, frame):  # noqa: ARG001
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    threading.Thread(target=emulator.saver_loop, daemon=True).start()
    info = {"pid": os.getpid(), "port": port, "started": time.time()}
    tmp = args.state_dir / "server.json.tmp"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, args.state_dir / "server.json")
    print(f"offload_assets local AWS emulator on http://127.0.0.1:{port} (pid {os.getpid()})", flush=True)
    server.serve_forever()
    emulator.save()
    print("state saved; emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
