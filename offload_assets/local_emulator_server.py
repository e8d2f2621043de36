"""Process entry point of the local AWS emulator (see :mod:`offload_assets.local_emulator`).

Runs moto's WSGI application on 127.0.0.1 with persistence added around it: moto keeps its
state in memory only, so the backends of the services we use are pickled to
``state.pickle`` shortly after every change and at shutdown, and restored at start.
That relies on moto internals, which is why moto is pinned to one version in pyproject.toml
and tested by ``offload_assets_tests/test_local_emulator.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

PERSISTED_SERVICES = ("dynamodb", "s3", "glue", "athena", "sns", "sqs", "sts", "iam")
HEALTH_PATH = "/__offload_emulator__/health"
SAVE_PATH = "/__offload_emulator__/save"
SAVE_IDLE_SECONDS = 1.0  # save once requests pause this long...
SAVE_MAX_DELAY_SECONDS = 15.0  # ...or at the latest this long after the first unsaved change


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
            saved = pickle.load(fh)
        for name, backend_dict in saved.items():
            live = get_backend(name)
            live.clear()
            live.update(backend_dict)
        print(f"restored state from {self.state_file}", flush=True)

    def save(self) -> None:
        from moto.backends import get_backend

        with self.lock:
            data = pickle.dumps({name: get_backend(name) for name in PERSISTED_SERVICES}, protocol=pickle.HIGHEST_PROTOCOL)
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

    # --- WSGI --------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
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
