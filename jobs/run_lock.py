"""A lease on an output location: at most one run of a job writes there at a time.

The lease is one small object, `<output>/_lock.json` (run id, owner, expiry), taken and
renewed with conditional writes, so two runs racing for it cannot both win: creating it
uses `If-None-Match: *`, taking over an expired one or renewing uses `If-Match: <ETag>`
(S3 and SeaweedFS both honour these). A run that dies stops renewing; its lease expires
and the next run takes it over (at once when the dead run was on the same host: its
process is checked). Local output folders use exclusive file creation and an
atomic rename of the expired file instead.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from jobs.errors import JobFailedError, MediaJobsError
from jobs.storage import Location, parse_uri, s3_client

__all__ = ["LOCK_FILE", "Lease", "LeaseKeeper", "LockHeldError", "acquire_lease", "release_lease", "renew_lease"]

LOCK_FILE = "_lock.json"
DEFAULT_TTL_SECONDS = 15 * 60  # renewed well within this while the run is alive


class LockHeldError(MediaJobsError):
    """Another run holds the output's lease."""

    headline = "run refused"
    exit_code = 3  # like a duplicate submission: the same job is already at work


@dataclass(frozen=True)
class Lease:
    uri: str
    run_id: str
    owner: str
    expires_at: float
    etag: str  # the lock object's version this lease wrote (for conditional renewal)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
        return False  # alive, someone else's
    return False


def _record(run_id: str, owner: str, expires_at: float) -> bytes:
    import secrets

    # The nonce makes every write's content, hence its ETag, unique: a stale holder of an
    # identical-looking record can never pass the If-Match of a newer one.
    return json.dumps({"run_id": run_id, "owner": owner, "expires_at": expires_at,
                       "expires": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)),
                       "nonce": secrets.token_hex(8)}).encode()


def acquire_lease(output_uri: str, run_id: str, ttl_seconds: float = DEFAULT_TTL_SECONDS,
                  now: Callable[[], float] = time.time) -> Lease:
    """Take the output's lease for `run_id`.

    Raises:
        LockHeldError: another run holds an unexpired lease (the message names it and says
            when it expires), or won a race for it just now.
    """
    location = parse_uri(output_uri).as_prefix().join(LOCK_FILE)
    store = _S3Lock(location) if location.scheme == "s3" else _FileLock(location)
    current = store.read()
    expires_at = now() + ttl_seconds
    record = _record(run_id, _owner(), expires_at)
    if current is None:
        etag = store.create(record)
    else:
        held, held_etag = current
        if held["expires_at"] > now() and held["run_id"] != run_id and not _owner_gone(held["owner"]):
            raise LockHeldError(
                f"another run ({held['run_id']} on {held['owner']}) is writing to {output_uri} until "
                f"{held.get('expires', held['expires_at'])} UTC; wait for it, or, if it died, for its lease to "
                f"expire (or delete {location.uri} by hand)")
        etag = store.replace(record, held_etag)
    if etag is None:
        raise LockHeldError(f"another run took the lease on {output_uri} at the same moment; try again later")
    return Lease(location.uri, run_id, _owner(), expires_at, etag)


def renew_lease(lease: Lease, ttl_seconds: float = DEFAULT_TTL_SECONDS,
                now: Callable[[], float] = time.time) -> Lease:
    """Extend a held lease. Raises LockHeldError when it was lost (expired and taken over)."""
    location = parse_uri(lease.uri)
    store = _S3Lock(location) if location.scheme == "s3" else _FileLock(location)
    expires_at = now() + ttl_seconds
    etag = store.replace(_record(lease.run_id, lease.owner, expires_at), lease.etag)
    if etag is None:
        raise LockHeldError(f"run {lease.run_id} lost its lease on {lease.uri} (it expired and another run took "
                            "it); stop writing")
    return Lease(lease.uri, lease.run_id, lease.owner, expires_at, etag)


def release_lease(lease: Lease) -> None:
    """Give the lease up, if it is still ours (a lease taken over by another run is left alone)."""
    location = parse_uri(lease.uri)
    store = _S3Lock(location) if location.scheme == "s3" else _FileLock(location)
    current = store.read()
    if current is not None and current[1] == lease.etag:
        store.delete()


class _S3Lock:
    def __init__(self, location: Location) -> None:
        self.location, self.client = location, s3_client()

    def read(self) -> tuple[dict, str] | None:
        try:
            response = self.client.get_object(Bucket=self.location.bucket, Key=self.location.key)
        except self.client.exceptions.NoSuchKey:
            return None
        return json.loads(response["Body"].read()), response["ETag"]

    def create(self, record: bytes) -> str | None:
        return self._put(record, IfNoneMatch="*")

    def replace(self, record: bytes, etag: str) -> str | None:
        return self._put(record, IfMatch=etag)

    def delete(self) -> None:
        self.client.delete_object(Bucket=self.location.bucket, Key=self.location.key)

    def _put(self, record: bytes, **condition) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.put_object(Bucket=self.location.bucket, Key=self.location.key, Body=record,
                                          ContentType="application/json", **condition)["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None  # someone else wrote first
            raise


class _FileLock:
    """The same protocol on a local folder; the 'ETag' is a digest of the file's content."""

    def __init__(self, location: Location) -> None:
        self.path = location.key

    @staticmethod
    def _etag(data: bytes) -> str:
        import hashlib

        return hashlib.sha256(data).hexdigest()

    def read(self) -> tuple[dict, str] | None:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return json.loads(data), self._etag(data)

    def create(self, record: bytes) -> str | None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "wb") as handle:
            handle.write(record)
        return self._etag(record)

    def replace(self, record: bytes, etag: str) -> str | None:
        current = self.read()
        if current is None or current[1] != etag:
            return None
        aside = f"{self.path}.{os.getpid()}.{time.monotonic_ns()}"
        try:
            os.rename(self.path, aside)  # atomic: of two racers, one moves the file, the other fails
        except FileNotFoundError:
            return None
        with open(aside, "rb") as handle:
            moved = handle.read()
        os.unlink(aside)
        if self._etag(moved) != etag:  # a third run renewed it in between: ours is stale
            return None
        return self.create(record)

    def delete(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class LeaseKeeper:
    """Renews the output's lease in the background; `check()` raises once it was lost."""

    def __init__(self, output_uri: str, run_id: str, ttl_seconds: float = DEFAULT_TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self.lease = acquire_lease(output_uri, run_id, ttl_seconds=ttl_seconds)
        self._lost: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="mediajobs-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_seconds / 5):
            try:
                self.lease = renew_lease(self.lease, ttl_seconds=self.ttl_seconds)
            except LockHeldError as exc:
                self._lost = exc
                return
            except Exception:  # noqa: BLE001 - a transient store error: try again next tick
                continue

    def check(self) -> None:
        if self._lost is not None:
            raise JobFailedError(f"{self._lost}; nothing was committed")

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._lost is None:
            release_lease(self.lease)

    def release_after_failure(self, echo: Callable[[str], None]) -> None:
        """Give the lease up after a failed run, if the store answers: it may be what failed.
        A lease left behind expires by itself; a re-run on this host takes it over at once."""
        from botocore.exceptions import BotoCoreError, ClientError

        from jobs.storage import describe_storage_error

        try:
            self.release()
        except (OSError, MediaJobsError, BotoCoreError, ClientError) as exc:
            echo(f"note: the lease {self.lease.uri} was not released ({describe_storage_error(exc)}); it expires "
                 f"within {max(1, round(self.ttl_seconds / 60))} minutes, and a re-run on this host takes it over "
                 "at once")
