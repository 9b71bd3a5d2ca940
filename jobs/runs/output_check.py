"""Checking, before any work, that a job can write where its spec says it writes.

A job that lists thousands of objects, loads a model and scores for an hour must not
find out at the commit that its output bucket does not exist or that its credentials
may only read it. `prepare_output` runs first in every runner: it makes sure the bucket
exists (creating it only where that is harmless, see `jobs.storage.checks.ensure_bucket`),
then writes and deletes a probe object under `<output>/_staging/`, the prefix every
job stages its results in, with the same credentials the job will use. On S3 it also
proves that the store honours conditional writes: the output lease and the Delta commit
protocol are put-if-absent and put-if-match writes, and a store that ignores the
conditions would let two runs both think they won.
"""

from __future__ import annotations

import secrets

from jobs.errors import MediaJobsError, StorageError
from jobs.storage.checks import ensure_bucket
from jobs.storage.objects import Location, describe_storage_error, parse_uri, s3_client

__all__ = ["ConditionalWritesError", "OutputNotWritableError", "prepare_output"]

PROBE_PREFIX = "_staging"


class OutputNotWritableError(MediaJobsError):
    """The spec's output location cannot be written: nothing was started."""

    headline = "output not writable"
    exit_code = 2  # retrying will not help: the bucket, the URI or the credentials must change


class ConditionalWritesError(OutputNotWritableError):
    """The store accepts writes but ignores their conditions (If-None-Match, If-Match)."""

    headline = "store unsafe for commits"


def prepare_output(uri: str, field: str = "output") -> Location:
    """The output location as a prefix, after proving that a write (and delete) there works.

    Raises:
        OutputNotWritableError: the bucket is missing and may not be created, or the
            credentials may not write or delete under the output prefix. The message
            names the spec field, the location and the fix.
        ConditionalWritesError: the store ignored a write's condition.
    """
    output = parse_uri(uri).as_prefix()
    try:
        ensure_bucket(output.uri)
    except StorageError as exc:
        raise OutputNotWritableError(f"{field}: {exc.message}. Nothing was started.") from None
    probe = output.join(PROBE_PREFIX, f".write-probe-{secrets.token_hex(6)}")
    try:
        _write_and_delete(probe)
    except Exception as exc:  # noqa: BLE001 - every failure here means the job could not commit
        raise OutputNotWritableError(
            f"{field}: cannot write to {output.uri} ({_reason(exc)}); use a location these credentials may "
            "write and delete in, or credentials that may. Nothing was started.") from None
    if probe.scheme == "s3":
        _check_conditional_writes(output, probe, field)
    return output


def _check_conditional_writes(output: Location, probe: Location, field: str) -> None:
    """A put with `If-None-Match: *` on an existing key, and one with a wrong `If-Match`,
    must both fail with 412; a store that lets either through is refused."""
    from botocore.exceptions import ClientError

    from jobs.storage.settings import resolve_s3_settings

    client = s3_client()
    client.put_object(Bucket=probe.bucket, Key=probe.key, Body=b"first")
    ignored = []
    try:
        for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"00000000000000000000000000000000"'}):
            try:
                client.put_object(Bucket=probe.bucket, Key=probe.key, Body=b"second", **condition)
                ignored.append(next(iter(condition)))
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    ignored.append(f"{next(iter(condition))} ({exc.response.get('Error', {}).get('Code')})")
    finally:
        client.delete_object(Bucket=probe.bucket, Key=probe.key)
    if ignored:
        store = resolve_s3_settings().endpoint or "AWS S3"
        raise ConditionalWritesError(
            f"{field}: the object store at {store} does not honour conditional writes ({', '.join(ignored)} on an "
            f"existing key under {output.uri} was not refused with 412 Precondition Failed); results could be "
            "committed twice or overwritten by a stale run there. Use a store that supports them (AWS S3, "
            "SeaweedFS 4.x, MinIO). Nothing was started.")


def _write_and_delete(probe: Location) -> None:
    if probe.scheme == "file":
        from pathlib import Path

        path = Path(probe.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        path.unlink()
        return
    client = s3_client()
    client.put_object(Bucket=probe.bucket, Key=probe.key, Body=b"")
    # Jobs delete their staging files after the commit: a store that lets them write but
    # not delete would leave them behind, so the probe proves both.
    client.delete_object(Bucket=probe.bucket, Key=probe.key)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    return describe_storage_error(exc)
