"""Process entry point of the local AWS emulator (see :mod:`offload_assets.local.emulator`).

Runs moto's WSGI application on 127.0.0.1 with persistence added around it: moto keeps its
state in memory only, so after every request that changed something, and before that request
is answered, the changed services' backends are pickled to ``state/`` (see
:mod:`offload_assets.local.state_store`). An acknowledged write therefore survives a SIGKILL of
the emulator; restarting restores it. That relies on moto internals, which is why moto is pinned
to one version in pyproject.toml and tested by ``offload_assets_tests/local/``.

Besides moto's own routes it serves a few of its own under ``/__offload_emulator__/`` (loopback
clients only; they exist only here, never on AWS): health, save, and
``dynamodb/point-in-time-recovery``, which gives a table a point-in-time recovery history
(PITR enabled N days ago), so native exports of past days can be tried locally.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copyreg
import datetime as dt
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from offload_assets.export.native import PITR_MAX_DAYS
from offload_assets.local.state_store import StateStore, pickle_backends

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
    # Each SQS queue guards its messages with a threading.Condition (nobody waits on it across a
    # save): a restored queue gets a fresh one.
    copyreg.pickle(threading.Condition, _fresh_condition)


def _fresh_condition(_condition):
    return threading.Condition, ()


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


# Requests that only read: GET/HEAD (S3 and moto's own API) and, for JSON protocols
# (X-Amz-Target), operations with these prefixes. Everything else counts as a change.
READ_ONLY_METHODS = ("GET", "HEAD", "OPTIONS")
READ_ONLY_OPERATION_PREFIXES = ("Get", "List", "Describe", "Scan", "Query", "BatchGet", "TransactGet", "Search")
# A request to one service that can change another's state.
COUPLED_SERVICES = {"s3": ("sqs", "sns"), "sns": ("sqs",), "dynamodb": ("s3",), "athena": ("s3",)}


def changed_services(environ) -> frozenset[str]:
    """The persisted services whose state this request may change (empty for a read)."""
    if environ.get("REQUEST_METHOD") in READ_ONLY_METHODS:
        return frozenset()
    target = environ.get("HTTP_X_AMZ_TARGET") or ""
    if target and target.rsplit(".", 1)[-1].startswith(READ_ONLY_OPERATION_PREFIXES):
        return frozenset()
    service = None
    auth = environ.get("HTTP_AUTHORIZATION") or ""
    with contextlib.suppress(IndexError, ValueError):  # SigV4: Credential=key/date/region/service/aws4_request
        service = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")[3].lower()
    if service not in PERSISTED_SERVICES:  # unsigned (moto's own API, e.g. reset) or unknown: assume all
        return frozenset(PERSISTED_SERVICES)
    return frozenset((service, *COUPLED_SERVICES.get(service, ())))


# DynamoDB item writes: journaled (appended + fsynced) instead of pickling the whole backend per
# request. Their effect depends only on the state before them, so replaying them in order on the
# last DynamoDB checkpoint gives the same state.
JOURNALED_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
CHECKPOINT_IDLE_SECONDS = 1.0  # checkpoint DynamoDB once item writes pause this long...
CHECKPOINT_MAX_SECONDS = 30.0  # ...or at the latest this long after the first journaled write
CHECKPOINT_MAX_RECORDS = 20_000  # ...or after this many (bounds the replay at start)
# Tests set it to hold checkpoints back (both delays), so that a restart must replay the journal.
CHECKPOINT_ENV_VAR = "OFFLOAD_ASSETS_EMULATOR_CHECKPOINT_SECONDS"


def journal_record(environ) -> dict | None:
    """The request as it must be replayed, for a journaled DynamoDB item write (else None).
    Reads the body and puts it back, so moto reads it as if nothing happened."""
    target = environ.get("HTTP_X_AMZ_TARGET") or ""
    service, _, operation = target.partition(".")
    if not service.startswith("DynamoDB_") or operation not in JOURNALED_OPERATIONS:
        return None
    if not environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING"):
        return None
    body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
    environ["wsgi.input"] = io.BytesIO(body)
    headers = {k: v for k, v in environ.items() if k.startswith("HTTP_") or k == "CONTENT_TYPE"}
    return {
        "method": environ.get("REQUEST_METHOD", "POST"),
        "path": environ.get("PATH_INFO", "/"),
        "query": environ.get("QUERY_STRING", ""),
        "headers": headers,
        "body": base64.b64encode(body).decode(),
    }


def replay_environ(record: dict) -> dict:
    from werkzeug.test import EnvironBuilder

    body = base64.b64decode(record["body"])
    environ = EnvironBuilder(
        method=record["method"], path=record["path"], query_string=record["query"], data=body
    ).get_environ()
    environ.update(record["headers"])
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["REMOTE_ADDR"] = "127.0.0.1"
    return environ


class StateNotSaved(RuntimeError):
    """The state could not be written to disk: the request that changed it is not acknowledged."""


class PersistentEmulator:
    """moto's WSGI app, with every change on disk before the request that made it is answered.

    Requests run one at a time under ``lock`` (so a save pickles a consistent state). A request
    that changed something, or that saw a change not yet on disk, waits for the saver thread
    before its response leaves: the saver pickles the changed services under the lock and
    writes them outside it, so requests arriving meanwhile go into the next save together
    (group commit). DynamoDB item writes are journaled instead (appended under the lock, fsynced
    before the answer) and DynamoDB is checkpointed in the background when they pause.
    moto's background jobs (native exports and imports) run under the lock too and count as
    changes, so a finished export is on disk before anyone can see it finished.
    """

    def __init__(self, state_dir: Path) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.state_dir = state_dir
        self.store = StateStore(state_dir)
        self.lock = threading.Lock()  # held by each request and by a snapshot: a snapshot is consistent
        self.saved = threading.Condition()  # guards the counters below
        self.changed_seq = 0  # changes made so far (under lock)
        self.saved_seq = 0  # changes on disk
        self.dirty: set[str] = set()  # services changed since the last snapshot (under lock)
        self.save_error: str | None = None
        self.save_mutex = threading.Lock()  # one save at a time (the saver thread, the save route, shutdown)
        self.journaled = 0  # item writes in the journal since the last DynamoDB checkpoint (under lock)
        self.first_journaled = 0.0  # monotonic time of the first of them
        self.last_journaled = 0.0  # ...and of the last
        self.checkpoint_idle, self.checkpoint_max = CHECKPOINT_IDLE_SECONDS, CHECKPOINT_MAX_SECONDS
        self.app = DomainDispatcherApplication(create_backend_app)

    # --- persistence -------------------------------------------------------------------
    def restore(self) -> None:
        from moto.backends import get_backend

        saved = self.store.load()
        for name, backend_dict in saved.items():
            live = get_backend(name)
            live.clear()
            live.update(backend_dict)
        if saved and not self.store.files:  # the old one-file format: write it anew, every service
            self.note_change(PERSISTED_SERVICES)
        if saved:
            print(f"restored state from {self.store.dir if self.store.files else self.store.legacy_file}", flush=True)
        records = self.store.journal_records()
        failed = 0
        for record in records:
            failed += not self.replay(record).startswith("2")
        if records:  # checkpoint soon, so the next start replays nothing
            self.journaled, self.first_journaled = len(records), time.monotonic() - self.checkpoint_max
            print(
                f"replayed {len(records)} journaled DynamoDB write(s), {failed} refused (as the first time)", flush=True
            )

    def replay(self, record: dict) -> str:
        """Run one journaled request again; returns its HTTP status line."""
        answer: list[str] = []
        for _ in self.app(replay_environ(record), lambda status, headers, exc_info=None: answer.append(status)):
            pass
        return answer[0] if answer else "500 no answer"

    def note_change(self, services) -> int:
        """Record a change (the caller holds ``lock``); returns the sequence number to wait for."""
        self.dirty.update(services)
        with self.saved:
            self.changed_seq += 1
            self.saved.notify_all()
            return self.changed_seq

    def wait_saved(self, seq: int) -> None:
        """Return once every change up to ``seq`` is on disk; raise if saving failed."""
        with self.saved:
            while self.saved_seq < seq:
                if self.save_error is not None:
                    raise StateNotSaved(self.save_error)
                self.saved.wait()

    def save_once(self, checkpoint: bool = False) -> bool:
        """Write what changed since the last save (and, with ``checkpoint``, DynamoDB if item writes
        were journaled since its last save). False when nothing had to be written."""
        with self.save_mutex:
            return self._save_changes(checkpoint)

    def checkpoint_due(self) -> bool:
        if not self.journaled:
            return False
        now = time.monotonic()
        return (
            now - self.last_journaled >= self.checkpoint_idle
            or now - self.first_journaled >= self.checkpoint_max
            or self.journaled >= CHECKPOINT_MAX_RECORDS
        )

    def _save_changes(self, checkpoint: bool = False) -> bool:
        with self.lock:
            with self.saved:
                seq = self.changed_seq
            checkpoint = checkpoint and self.journaled > 0
            if seq == self.saved_seq and not checkpoint:
                return False
            dirty, self.dirty = self.dirty, set()
            journaled, journal_start = self.journaled, None
            if checkpoint:
                dirty.add("dynamodb")
            if "dynamodb" in dirty:  # this pickle holds every journaled write so far: a new journal follows it
                journal_start, self.journaled = self.store.rotate_journal(), 0
            try:
                pickled = pickle_backends(sorted(dirty & set(PERSISTED_SERVICES)))
            except BaseException:
                self.dirty |= dirty
                self.journaled += journaled
                raise
        try:
            self.store.save(pickled, journal_start)
        except BaseException:
            with self.lock:
                self.dirty |= dirty
                self.journaled += journaled
            raise
        with self.saved:
            self.saved_seq, self.save_error = seq, None
            self.saved.notify_all()
        return True

    def save(self) -> None:
        """Write every service's file anew, now (the save route)."""
        with self.lock:
            seq = self.note_change(PERSISTED_SERVICES)
        self.save_once(checkpoint=True)
        self.wait_saved(seq)

    def saver_loop(self) -> None:
        while True:
            with self.saved:
                while self.changed_seq == self.saved_seq and not self.checkpoint_due():
                    self.saved.wait(timeout=0.5)
            try:
                self.save_once(checkpoint=self.checkpoint_due())
            except Exception as err:  # answer the waiting requests with an error; retry on the next change
                message = f"saving emulator state failed: {err!r}"
                print(message, file=sys.stderr, flush=True)
                with self.saved:
                    self.save_error = message
                    self.saved.notify_all()
                time.sleep(0.5)

    def make_background_jobs_durable(self) -> None:
        """moto runs native exports and imports in threads that change DynamoDB and S3 after the
        request returned: run them under the request lock and record their changes, so a saved
        state never holds half an export and "COMPLETED" is never answered before it is on disk."""
        from moto.dynamodb.models.table_export import TableExport
        from moto.dynamodb.models.table_import import TableImport

        emulator = self
        for cls in (TableExport, TableImport):
            original = cls.run
            if getattr(original, "_offload_durable", False):
                continue

            def run(job, _original=original):
                with emulator.lock:
                    try:
                        _original(job)
                    finally:
                        emulator.note_change(("dynamodb", "s3"))

            run._offload_durable = True
            cls.run = run

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
            seq = self.note_change(("dynamodb",))
        self.wait_saved(seq)
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
            self.save()  # everything is on disk already; this also rewrites every service's file
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        services = changed_services(environ)
        record = journal_record(environ) if services else None
        answered: list = []

        def hold_response(status, headers, exc_info=None):
            answered[:] = [status, headers, exc_info]

        with self.lock:
            # Materialise the body while holding the lock so a snapshot never sees half a request.
            body = list(self.app(environ, hold_response))
            # Journaled even when refused: a refused write (a failed condition, a batch stopped
            # midway) is refused the same way, with the same effect, when replayed.
            if record is not None:
                try:
                    self.store.append_journal(record)
                except OSError:
                    record = None
                else:
                    now = time.monotonic()
                    self.first_journaled = self.first_journaled if self.journaled else now
                    self.last_journaled, self.journaled = now, self.journaled + 1
            if services and record is None:
                seq = self.note_change(services)
            else:
                with self.saved:
                    seq = self.changed_seq  # a read must not show what is not on disk yet
        try:
            if record is not None:
                self.store.sync_journal()
            self.wait_saved(seq)
        except StateNotSaved as err:
            message = json.dumps({"__type": "InternalFailure", "message": str(err)}).encode()
            start_response("500 Internal Server Error", [("Content-Length", str(len(message)))])
            return [message]
        start_response(*answered)
        return body


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
    if os.environ.get(CHECKPOINT_ENV_VAR):
        emulator.checkpoint_idle = emulator.checkpoint_max = float(os.environ[CHECKPOINT_ENV_VAR])
    emulator.restore()
    emulator.make_background_jobs_durable()
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
    emulator.save_once(checkpoint=True)  # every change was on disk already: this spares the next start a replay
    print("state saved; emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
