"""A lease on an output location: at most one run of a job writes there at a time. A run
holds `<output>/_lock.json` while it works, and checks it still does right before a commit.

Protocol. The lock is one small record (run id, owner, TTL, nonce), created with
`If-None-Match: *` and renewed or taken over with `If-Match: <ETag>`, so of two racers one
wins. It is expired when, by the store's clock, it was last written more than its TTL ago
(S3: the object's LastModified against the Date of the same response; a local folder: the
file's mtime against this host's clock): a run on a host with a wrong clock neither keeps a
lease too long nor loses it early. Its `expires` field is for people only. Every write
carries a fresh nonce, which makes its ETag unique and lets a writer whose answer was lost
recognise its own write when the retry fails its precondition. Release deletes the lock
only while its ETag is still ours (`If-Match` on the delete), so a stale holder never
removes a newer one's. A holder on this host whose process is gone is taken over at once.
Local folders get the same guarantees from hard links (create) and renames (take away).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from jobs.errors import JobFailedError, MediaJobsError, StorageError
from jobs.storage.objects import Location, describe_storage_error, parse_uri, s3_client

__all__ = ["LOCK_FILE", "Lease", "LeaseKeeper", "LockHeldError", "acquire_lease", "lease_is_held", "release_lease",
           "renew_lease"]

LOCK_FILE = "_lock.json"
DEFAULT_TTL_SECONDS = 15 * 60  # renewed every fifth of this while the run is alive
TTL_VARIABLE = "MEDIAJOBS_LEASE_TTL_SECONDS"
_LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey")  # S3 error codes


class LockHeldError(MediaJobsError):
    """Another run holds the output's lease."""

    headline = "run refused"
    exit_code = 3  # like a duplicate submission: the same job is already at work


@dataclass(frozen=True)
class Lease:
    """A lease this process holds; `etag` is the lock object's version it wrote last."""

    uri: str
    run_id: str
    owner: str
    ttl_seconds: float
    expires_at: float  # by this host's clock, for messages only
    etag: str
    # It replaced another run's unreleased lock: that run may still be alive and writing.
    taken_over: bool = False


class _Current(NamedTuple):
    record: dict
    etag: str
    age: float  # seconds since it was written, by the store's clock


def _ttl_from_environment() -> float:
    raw = os.environ.get(TTL_VARIABLE, "").strip()
    try:
        ttl = float(raw) if raw else DEFAULT_TTL_SECONDS
    except ValueError:
        ttl = math.nan
    if not (math.isfinite(ttl) and ttl > 0):
        raise MediaJobsError(f"{TTL_VARIABLE} must be a positive number of seconds, not {raw!r}; fix it, or unset "
                             f"it for the default of {DEFAULT_TTL_SECONDS} s")
    return ttl


def _owner_gone(owner: str) -> bool:
    """True when the holder ran on this host and its process is gone: a killed run's lease
    need not block a re-run on the same machine until it expires."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's
    return False


def _record(run_id: str, owner: str, ttl_seconds: float, nonce: str | None = None) -> dict:
    expires_at = time.time() + ttl_seconds
    return {"run_id": run_id, "owner": owner, "ttl_seconds": ttl_seconds, "expires_at": expires_at,
            "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)),
            "nonce": nonce or secrets.token_hex(8)}


def _write(store: _S3Lock | _FileLock, record: dict, etag: str | None) -> str | None:
    """Create the lock (`etag` None) or replace that version of it; the new ETag, or None
    when another writer won. A failed precondition may be our own write, retried after its
    answer was lost: the nonce tells."""
    written = store.write(json.dumps(record).encode(), etag)
    if written is None:
        current = store.read()
        if current is not None and current.record.get("nonce") == record["nonce"]:
            return current.etag
    return written


def _store(location: Location) -> _S3Lock | _FileLock:
    return _S3Lock(location) if location.scheme == "s3" else _FileLock(location)


def acquire_lease(output_uri: str, run_id: str, ttl_seconds: float | None = None) -> Lease:
    """Take the output's lease for `run_id` (re-entering it when that run holds it).

    Args:
        ttl_seconds: how long the lease lasts unrenewed; by default `MEDIAJOBS_LEASE_TTL_SECONDS`,
            else 15 minutes.

    Raises:
        LockHeldError: another run holds an unexpired lease (the message names it and says
            when it expires), or won a race for it just now.
        MediaJobsError: `MEDIAJOBS_LEASE_TTL_SECONDS` is not a positive number.
    """
    ttl = ttl_seconds if ttl_seconds is not None else _ttl_from_environment()
    location = parse_uri(output_uri).as_prefix().join(LOCK_FILE)
    store = _store(location)
    current = store.read()
    taken_over = False
    if current is not None and current.record["run_id"] != run_id:
        held = current.record
        # A lock written before records carried their TTL had the default one.
        if current.age <= held.get("ttl_seconds", DEFAULT_TTL_SECONDS) and not _owner_gone(held["owner"]):
            raise LockHeldError(
                f"another run ({held['run_id']} on {held['owner']}) is writing to {output_uri} until "
                f"{held.get('expires', held['expires_at'])} UTC; wait for it, or, if it died, for its lease to "
                f"expire (or delete {location.uri} by hand)")
        taken_over = True
    record = _record(run_id, f"{socket.gethostname()}:{os.getpid()}", ttl)
    etag = _write(store, record, current.etag if current is not None else None)
    if etag is None:
        raise LockHeldError(f"another run took the lease on {output_uri} at the same moment; try again later")
    return Lease(location.uri, run_id, record["owner"], ttl, record["expires_at"], etag, taken_over)


def renew_lease(lease: Lease, ttl_seconds: float | None = None, *, nonce: str | None = None) -> Lease:
    """Extend a held lease.

    Args:
        ttl_seconds: the new TTL; the lease's own by default.
        nonce: to retry a renewal whose answer never came, pass the nonce it was made with:
            if that write landed, it is recognised as ours. A fresh one by default.

    Raises:
        LockHeldError: the lease was lost (it expired and another run took it).
    """
    ttl = ttl_seconds if ttl_seconds is not None else lease.ttl_seconds
    record = _record(lease.run_id, lease.owner, ttl, nonce)
    etag = _write(_store(parse_uri(lease.uri)), record, lease.etag)
    if etag is None:
        raise LockHeldError(f"run {lease.run_id} lost its lease on {lease.uri} (it expired and another run took "
                            "it); stop writing")
    return dataclasses.replace(lease, ttl_seconds=ttl, expires_at=record["expires_at"], etag=etag)


def release_lease(lease: Lease) -> None:
    """Give the lease up, if it is still ours (a lease taken over by another run is left alone)."""
    _store(parse_uri(lease.uri)).delete(lease.etag)


def lease_is_held(lease: Lease) -> bool:
    """Whether the lock is still the version this lease wrote (ask right before a commit)."""
    current = _store(parse_uri(lease.uri)).read()
    return current is not None and current.etag == lease.etag


class _S3Lock:
    def __init__(self, location: Location) -> None:
        self.location, self.client = location, s3_client()

    def read(self) -> _Current | None:
        try:
            response = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key)
        except self.client.exceptions.NoSuchKey:
            return None
        # Both times come from the server: no run's host clock takes part in expiry.
        date = response["ResponseMetadata"]["HTTPHeaders"].get("date")
        if not date:
            raise StorageError(f"the object store sent no Date header with {self.location.uri}; the output lease "
                               "needs the store's clock")
        age = parsedate_to_datetime(date).timestamp() - response["LastModified"].timestamp()
        return _Current(json.loads(response["Body"].read()), response["ETag"], age)

    def write(self, body: bytes, etag: str | None) -> str | None:
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        response = self._conditionally(self.client.put_object, Body=body, ContentType="application/json",
                                       **condition)
        return None if response is None else response["ETag"]

    def delete(self, etag: str) -> None:
        self._conditionally(self.client.delete_object, IfMatch=etag)  # failed: not ours any more

    def _conditionally(self, call: Callable[..., dict], **kwargs) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return call(Bucket=self.location.bucket, Key=self.location.key, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _LOST_RACE:
                return None  # someone else wrote (or deleted) first
            raise


class _FileLock:
    """The same protocol on a local folder; the 'ETag' is a digest of the file's content."""

    def __init__(self, location: Location) -> None:
        self.path = location.key

    def read(self) -> _Current | None:
        try:
            with open(self.path, "rb") as handle:
                data, written = handle.read(), os.fstat(handle.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return _Current(json.loads(data), _digest(data), time.time() - written)

    def write(self, body: bytes, etag: str | None) -> str | None:
        if etag is not None and not self._take_away(etag):
            return None
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        draft = self._scratch_path()
        with open(draft, "xb") as handle:
            handle.write(body)
        try:
            os.link(draft, self.path)  # fails if it exists; readers never see a half-written lock
        except FileExistsError:
            return None
        finally:
            os.unlink(draft)
        return _digest(body)

    def delete(self, etag: str) -> None:
        self._take_away(etag)

    def _take_away(self, etag: str) -> bool:
        """Remove the lock if it is the version `etag`; True when it was (and is gone now)."""
        current = self.read()
        if current is None or current.etag != etag:
            return False
        aside = self._scratch_path()
        try:
            os.rename(self.path, aside)  # atomic: of two racers, one moves the file, the other fails
        except FileNotFoundError:
            return False
        with open(aside, "rb") as handle:
            ours = _digest(handle.read()) == etag
        if not ours:
            # Its holder renewed it after our read: put it back (the same inode keeps its
            # age), unless a newcomer created a lock meanwhile; then that one holds it.
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        os.unlink(aside)
        return ours

    def _scratch_path(self) -> str:
        return f"{self.path}.{secrets.token_hex(6)}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LeaseKeeper:
    """Holds the output's lease for a run, renewed in the background every fifth of its TTL;
    `check()` raises once it was lost, `held()` asks the store (right before a commit)."""

    def __init__(self, output_uri: str, run_id: str, ttl_seconds: float | None = None) -> None:
        self.ttl_seconds = ttl_seconds if ttl_seconds is not None else _ttl_from_environment()
        self.lease = acquire_lease(output_uri, run_id, ttl_seconds=self.ttl_seconds)
        self._lost: Exception | None = None
        self._renewing = threading.Lock()  # held() must not compare against a lease being replaced
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="mediajobs-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        nonce = None  # kept after a failed attempt: its write may have landed all the same
        while not self._stop.wait(self.ttl_seconds / 5):
            nonce = nonce or secrets.token_hex(8)
            try:
                with self._renewing:
                    self.lease = renew_lease(self.lease, ttl_seconds=self.ttl_seconds, nonce=nonce)
                nonce = None
            except LockHeldError as exc:
                self._lost = exc
                return
            except Exception:  # noqa: BLE001 - a transient store error: try again next tick
                continue

    def check(self) -> None:
        if self._lost is not None:
            raise JobFailedError(f"{self._lost}; nothing was committed")

    def held(self) -> bool:
        """Whether the lease is still this run's at this moment (it asks the store)."""
        with self._renewing:
            return self._lost is None and lease_is_held(self.lease)

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._lost is None:
            release_lease(self.lease)

    def release_after_failure(self, echo: Callable[[str], None]) -> None:
        """Give the lease up after a failed run, if the store answers: it may be what failed.
        A lease left behind expires by itself; a re-run on this host takes it over at once."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.release()
        except (OSError, MediaJobsError, BotoCoreError, ClientError) as exc:
            echo(f"note: the lease {self.lease.uri} was not released ({describe_storage_error(exc)}); it expires "
                 f"within {max(1, round(self.ttl_seconds / 60))} minutes, and a re-run on this host takes it over "
                 "at once")
