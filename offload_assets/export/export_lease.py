"""One owner per scan export: a lease (owner run id + heartbeat) kept in the export's plan.

The plan, ``<export>/_checkpoints/scan.json``, names the run that owns the export and when it
last proved it was alive. Every change of the plan is a compare-and-swap on S3
(:mod:`offload_assets.aws.s3_conditional`), so:

* the owner creates the plan with ``If-None-Match`` and renews its heartbeat with ``If-Match``
  every ``heartbeat_seconds``; a renewal that fails means another run took the export over, and
  the owner stops before recording anything more;
* a run that finds an unfinished export takes it over only when the owner's heartbeat is older
  than the lease (or the owner released it on failure): if the heartbeat is fresh it waits the
  lease out once and, when the heartbeat moved or the export finished meanwhile, refuses;
* the takeover is itself an ``If-Match`` write of the plan the resumer read, so of two resumers
  of one dead export exactly one wins; the other is refused, naming the table, the partition and
  the run that won;
* an export with ``manifest-summary.json`` is finished: nobody resumes it, and the owner renews
  its lease once more right before writing the manifests, so it never finishes an export it lost.

Heartbeats compare wall clocks of different runs: the default lease (minutes) dwarfs clock skew.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from offload_assets.aws.s3_conditional import VersionedJson, put_json_if, read_json
from offload_assets.export.errors import ExportOwnershipError
from offload_assets.export.layout import MANIFEST_SUMMARY, export_dir_key, utc_iso
from offload_assets.export.scan_checkpoints import PLAN_NAME, ScanPlan, checkpoint_prefix

DEFAULT_HEARTBEAT_SECONDS = 20.0


def new_owner_id() -> str:
    """A run id that says where the run is: host, process, random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ExportLease:
    plan: ScanPlan
    owner: str
    heartbeat: dt.datetime
    heartbeat_seconds: float
    released: bool
    version: VersionedJson

    def age(self, now: dt.datetime | None = None) -> float:
        return ((now or dt.datetime.now(dt.UTC)) - self.heartbeat).total_seconds()

    @classmethod
    def from_json(cls, found: VersionedJson) -> ExportLease:
        body = found.body
        names = {f.name for f in fields(ScanPlan)}
        plan = ScanPlan(**{k: v for k, v in body.items() if k in names})
        stamp = body.get("heartbeat") or plan.start_time  # a plan written before leases existed
        return cls(
            plan=plan,
            owner=body.get("owner", "unknown (a run without a lease)"),
            heartbeat=dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")),
            heartbeat_seconds=float(body.get("heartbeat_seconds", DEFAULT_HEARTBEAT_SECONDS)),
            released=bool(body.get("released", False)),
            version=found,
        )


def plan_key(export_prefix: str, export_id: str) -> str:
    return checkpoint_prefix(export_prefix, export_id) + PLAN_NAME


def read_lease(s3: Any, *, bucket: str, export_prefix: str, export_id: str) -> ExportLease | None:
    found = read_json(s3, bucket=bucket, key=plan_key(export_prefix, export_id))
    return ExportLease.from_json(found) if found else None


def export_finished(s3: Any, *, bucket: str, export_prefix: str, export_id: str) -> bool:
    key = f"{export_dir_key(export_prefix, export_id)}/{MANIFEST_SUMMARY}"
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount"))


def _write(
    s3: Any,
    *,
    bucket: str,
    export_prefix: str,
    plan: ScanPlan,
    owner: str,
    heartbeat_seconds: float,
    expected: ExportLease | None,
    released: bool = False,
    put_kwargs: dict[str, Any] | None = None,
) -> ExportLease | None:
    body = {
        **asdict(plan),
        "owner": owner,
        "heartbeat": utc_iso(),
        "heartbeat_seconds": heartbeat_seconds,
        "released": released,
    }
    written = put_json_if(
        s3,
        bucket=bucket,
        key=plan_key(export_prefix, plan.export_id),
        body=body,
        expected=expected.version if expected else None,
        put_kwargs=put_kwargs,
    )
    return ExportLease.from_json(written) if written else None


def create_owned_plan(
    s3: Any,
    *,
    bucket: str,
    export_prefix: str,
    plan: ScanPlan,
    owner: str,
    heartbeat_seconds: float,
    put_kwargs: dict[str, Any] | None = None,
) -> ExportLease:
    lease = _write(
        s3,
        bucket=bucket,
        export_prefix=export_prefix,
        plan=plan,
        owner=owner,
        heartbeat_seconds=heartbeat_seconds,
        expected=None,
        put_kwargs=put_kwargs,
    )
    if lease is None:  # export ids are unique: only a clash of the random suffix gets here
        raise ExportOwnershipError(f"scan export {plan.export_id} under {export_prefix} already has a plan")
    return lease


def renew_lease(
    s3: Any, *, bucket: str, export_prefix: str, lease: ExportLease, released: bool = False, put_kwargs=None
) -> ExportLease | None:
    """The owner's heartbeat (or, ``released``, its goodbye); None when another run took the export over."""
    return _write(
        s3,
        bucket=bucket,
        export_prefix=export_prefix,
        plan=lease.plan,
        owner=lease.owner,
        heartbeat_seconds=lease.heartbeat_seconds,
        expected=lease,
        released=released,
        put_kwargs=put_kwargs,
    )


def take_over_unfinished_export(
    s3: Any,
    *,
    bucket: str,
    export_prefix: str,
    export_id: str,
    owner: str,
    lease_seconds: float,
    heartbeat_seconds: float,
    where: str,
    put_kwargs: dict[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ExportLease:
    """Become the owner of a dead run's unfinished export, or raise :class:`ExportOwnershipError`.

    Dead: released by its owner, or no heartbeat for ``lease_seconds``. A live owner gets one
    lease period to prove it is still alive; a finished export is never taken over.
    """
    what = f"{where}: scan export {export_id} under s3://{bucket}/{export_prefix}/"
    current = read_lease(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id)
    if current is None or export_finished(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id):
        raise ExportOwnershipError(f"{what} was finished by another run meanwhile; nothing to resume")
    if not current.released and current.age() < lease_seconds:
        sleep(lease_seconds - current.age())
        again = read_lease(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id)
        if again is None or export_finished(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id):
            raise ExportOwnershipError(
                f"{what} was finished meanwhile by its owner, run {current.owner}; nothing to resume"
            )
        if again.version.etag != current.version.etag and not again.released:
            raise ExportOwnershipError(
                f"{what} is owned by run {again.owner}, which is still alive (heartbeat {again.age():.1f} s ago, "
                f"lease {lease_seconds:.0f} s): another run is still writing scan export {export_id}; wait for it "
                "to finish instead of starting a second one"
            )
        current = again
    won = _write(
        s3,
        bucket=bucket,
        export_prefix=export_prefix,
        plan=current.plan,
        owner=owner,
        heartbeat_seconds=heartbeat_seconds,
        expected=current,
        put_kwargs=put_kwargs,
    )
    if won is None:
        winner = read_lease(s3, bucket=bucket, export_prefix=export_prefix, export_id=export_id)
        who = f"run {winner.owner}" if winner else "its owner, which finished it"
        raise ExportOwnershipError(
            f"{what}: {who} took it over first (this run, {owner}, lost the race for the dead owner "
            f"{current.owner}'s lease); nothing was written"
        )
    return won


class LeaseKeeper:
    """Renews the owner's heartbeat in a background thread; ``lost`` is set when a renewal fails."""

    def __init__(
        self,
        s3: Any,
        *,
        bucket: str,
        export_prefix: str,
        lease: ExportLease,
        on_lost: Callable[[], None],
        put_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._s3, self._bucket, self._prefix, self._put_kwargs = s3, bucket, export_prefix, put_kwargs
        self.lease = lease
        self.lost = threading.Event()
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="export-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease.heartbeat_seconds):
            if not self.renew():
                self._on_lost()
                return

    def renew(self, released: bool = False, strict: bool = False) -> bool:
        """One heartbeat now; False once the lease is lost. ``strict``: a failed request raises."""
        with self._lock:
            if self.lost.is_set():
                return False
            try:
                new = renew_lease(
                    self._s3,
                    bucket=self._bucket,
                    export_prefix=self._prefix,
                    lease=self.lease,
                    released=released,
                    put_kwargs=self._put_kwargs,
                )
            except Exception:  # a failed heartbeat is retried at the next beat; the lease covers a few
                if strict:
                    raise
                return True
            if new is None:
                self.lost.set()
                return False
            self.lease = new
            return True
