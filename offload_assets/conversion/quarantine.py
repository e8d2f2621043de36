"""Bad lines: fail on the first one, or set them aside and count them."""

from __future__ import annotations

import os
import tempfile

import orjson
import pyarrow.fs as pafs

from .options import QUARANTINE_DIR, ExportLineError
from .parquet_output import join_path


class BadLines:
    """Receives bad lines. ``mode="fail"`` raises :class:`ExportLineError` at once;
    ``mode="quarantine"`` appends ``{"file", "line", "reason", "text"}`` JSON lines to a local
    temporary file, published as ``<output_dir>/_quarantine/bad-lines.jsonl`` by :meth:`publish`.
    """

    def __init__(self, table: str, mode: str, scratch_dir: str | None = None) -> None:
        self.table = table
        self.mode = mode
        self.count = 0
        self._seen: set[tuple[str, int]] = set()
        self._tmp = None
        self._scratch_dir = scratch_dir

    def add(self, file: str, line: int, reason: str, text: bytes | None) -> None:
        if self.mode == "fail":
            raise ExportLineError(self.table, file, line, reason)
        if (file, line) in self._seen:
            return
        self._seen.add((file, line))
        if self._tmp is None:
            self._tmp = tempfile.NamedTemporaryFile(
                "wb", prefix="quarantine-", suffix=".jsonl", dir=self._scratch_dir, delete=False
            )
        record = {
            "table": self.table,
            "file": file,
            "line": line,
            "reason": reason,
            "text": text.decode("utf-8", "replace").rstrip("\r\n") if text is not None else None,
        }
        self._tmp.write(orjson.dumps(record) + b"\n")
        self.count += 1

    def is_bad(self, file: str, line: int) -> bool:
        return (file, line) in self._seen

    def publish(self, filesystem: pafs.FileSystem, output_dir: str) -> tuple[str, ...]:
        if self._tmp is None:
            return ()
        self._tmp.close()
        directory = join_path(output_dir, QUARANTINE_DIR)
        filesystem.create_dir(directory, recursive=True)
        path = join_path(directory, "bad-lines.jsonl")
        with open(self._tmp.name, "rb") as src, filesystem.open_output_stream(path) as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        return (path,)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.close()
            try:
                os.unlink(self._tmp.name)
            except FileNotFoundError:
                pass
