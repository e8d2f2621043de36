"""Where the local emulator keeps its state on disk: one pickle per service, a journal, a manifest.

moto holds everything in memory. The emulator server makes every change durable here *before*
it answers the request that made it (see :mod:`offload_assets.local.emulator_server`), so an
acknowledged write survives a SIGKILL of the emulator, in one of two ways:

- DynamoDB item writes (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems)
  are appended to a journal (the request as received) and fsynced: a few microseconds plus
  one fsync, whatever the table's size. At start the journal is replayed, in order, on top of
  the last DynamoDB checkpoint; the server checkpoints DynamoDB when writes pause, in the
  background, and starts a new journal file there.
- Every other change (S3 objects, Glue, tables themselves, exports...) pickles the services
  it touched and writes them before answering. Only those services are pickled again.

Layout of ``<emulator dir>/state/``::

    manifest.json       {"format": 2, "generation": 17, "journal_start": 5,
                         "services": {"s3": "s3-17.pickle", "dynamodb": "dynamodb-12.pickle", ...}}
    s3-17.pickle  dynamodb-12.pickle ...  journal-5.log  journal-6.log

A save writes the changed services' files under new names, then replaces ``manifest.json`` in
one rename, then removes the files it superseded: whatever instant the process dies, the
manifest names one consistent set of files, and the journal files numbered ``journal_start``
and up hold every DynamoDB item write made after the DynamoDB pickle it names. Every file and
the directory are fsynced before the rename, so the state also survives a crash of the machine
(as far as the disk keeps its promises).

``state.pickle`` (one pickle of every service, the format before this module) is still read when
there is no manifest, and removed after the first save.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import struct
from pathlib import Path

STATE_FORMAT = 2
MANIFEST = "manifest.json"
LEGACY_STATE_FILE = "state.pickle"
_JOURNAL_NAME = re.compile(r"^journal-(\d+)\.log$")
_RECORD_HEADER = struct.Struct(">I")  # length of the JSON record that follows


class _StateUnpickler(pickle.Unpickler):
    """Reads state saved before the package was split into subpackages (the server module was
    ``offload_assets.local_emulator_server``), so an existing state survives the move."""

    def find_class(self, module: str, name: str):
        if module == "offload_assets.local_emulator_server":
            module = "offload_assets.local.emulator_server"
        return super().find_class(module, name)


def _load(path: Path):
    with open(path, "rb") as fh:
        return _StateUnpickler(fh).load()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class StateStore:
    """The saved state of one emulator directory (``<state_dir>/emulator``)."""

    def __init__(self, emulator_dir: Path) -> None:
        self.emulator_dir = emulator_dir
        self.dir = emulator_dir / "state"
        self.legacy_file = emulator_dir / LEGACY_STATE_FILE
        self.generation = 0
        self.files: dict[str, str] = {}  # service -> file name in self.dir
        self.journal_start = 1  # first journal file to replay after the saved DynamoDB
        self.journal_number = 1  # the journal file being appended to
        self._journal_fd: int | None = None

    # --- reading ----------------------------------------------------------------------------
    def load(self) -> dict[str, object]:
        """Every saved service's backend dict (empty when nothing was saved)."""
        manifest_path = self.dir / MANIFEST
        backends: dict[str, object] = {}
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("format") != STATE_FORMAT:
                raise ValueError(f"{manifest_path}: unknown state format {manifest.get('format')!r}")
            self.generation = int(manifest["generation"])
            self.files = dict(manifest["services"])
            self.journal_start = int(manifest.get("journal_start", 1))
            backends = {service: _load(self.dir / name) for service, name in self.files.items()}
        elif self.legacy_file.exists():
            backends = dict(_load(self.legacy_file))
        self.journal_number = max([self.journal_start - 1, *self._journal_numbers()]) + 1
        return backends

    # --- the journal ------------------------------------------------------------------------
    def _journal_numbers(self) -> list[int]:
        if not self.dir.exists():
            return []
        return sorted(int(m.group(1)) for f in self.dir.iterdir() if (m := _JOURNAL_NAME.match(f.name)))

    def journal_records(self) -> list[dict]:
        """The journaled writes to replay after the saved DynamoDB, oldest first. A torn last
        record (the process died inside its write, before answering) is left out."""
        records = []
        for number in self._journal_numbers():
            if number < self.journal_start:
                continue
            data = (self.dir / f"journal-{number}.log").read_bytes()
            offset = 0
            while offset + _RECORD_HEADER.size <= len(data):
                (size,) = _RECORD_HEADER.unpack_from(data, offset)
                start, offset = offset + _RECORD_HEADER.size, offset + _RECORD_HEADER.size + size
                if offset > len(data):
                    break
                records.append(json.loads(data[start:offset]))
        return records

    def append_journal(self, record: dict) -> None:
        """Append one write to the journal (the caller holds the request lock); :meth:`sync_journal` makes it durable."""
        if self._journal_fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / f"journal-{self.journal_number}.log"
            self._journal_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            _fsync_dir(self.dir)
        data = json.dumps(record, separators=(",", ":")).encode()
        os.write(self._journal_fd, _RECORD_HEADER.pack(len(data)) + data)

    def sync_journal(self) -> None:
        fd = self._journal_fd
        if fd is not None:
            with contextlib.suppress(OSError):  # closed by a rotation meanwhile: that one synced it
                os.fsync(fd)

    def rotate_journal(self) -> int:
        """Start a new journal file (the caller holds the request lock, about to pickle DynamoDB);
        returns its number: the ``journal_start`` of the save that pickle goes into."""
        if self._journal_fd is not None:
            os.fsync(self._journal_fd)
            os.close(self._journal_fd)
            self._journal_fd = None
        self.journal_number += 1
        return self.journal_number

    # --- writing ----------------------------------------------------------------------------
    def save(self, pickled: dict[str, bytes], journal_start: int | None = None) -> None:
        """Replace the saved state of the services in ``pickled`` (service -> pickle bytes), atomically.
        ``journal_start``: the journal file that follows a DynamoDB pickle among them."""
        if not pickled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        journal_start = journal_start or self.journal_start
        generation = self.generation + 1
        files = dict(self.files)
        for service, data in pickled.items():
            name = f"{service}-{generation}.pickle"
            _write_durably(self.dir / name, data)
            files[service] = name
        manifest = {"format": STATE_FORMAT, "generation": generation, "journal_start": journal_start, "services": files}
        tmp = self.dir / (MANIFEST + ".tmp")
        _write_durably(tmp, json.dumps(manifest, sort_keys=True).encode())
        os.replace(tmp, self.dir / MANIFEST)
        _fsync_dir(self.dir)
        superseded = {self.files[s] for s in pickled if s in self.files}
        self.generation, self.files, self.journal_start = generation, files, journal_start
        superseded |= {f"journal-{n}.log" for n in self._journal_numbers() if n < journal_start}
        for name in superseded:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()
        if self.legacy_file.exists():
            self.legacy_file.unlink()


def forget_state(emulator_dir: Path) -> None:
    """Remove every saved state of an emulator directory (the emulator must be stopped)."""
    shutil.rmtree(emulator_dir / "state", ignore_errors=True)
    (emulator_dir / LEGACY_STATE_FILE).unlink(missing_ok=True)


def pickle_backends(services) -> dict[str, bytes]:
    """Pickle moto's backends of ``services`` now (the caller holds the emulator's request lock)."""
    from moto.backends import get_backend

    out = {}
    for name in services:
        try:
            out[name] = pickle.dumps(get_backend(name), protocol=pickle.HIGHEST_PROTOCOL)
        except (TypeError, AttributeError, pickle.PicklingError) as err:
            raise TypeError(f"moto's {name} state cannot be saved: {err}") from err
    return out
