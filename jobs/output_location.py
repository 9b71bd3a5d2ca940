"""Checking, before any work, that a job can write where its spec says it writes.

A job that lists thousands of objects, loads a model and scores for an hour must not
find out at the commit that its output bucket does not exist or that its credentials
may only read it. `prepare_output` runs first in every runner: it makes sure the bucket
exists (creating it only where that is harmless, see `jobs.storage.ensure_bucket`),
then writes and deletes a probe object under `<output>/_staging/`, the prefix every
job stages its results in, with the same credentials the job will use.
"""

from __future__ import annotations

import secrets

from jobs.errors import MediaJobsError, StorageError
from jobs.storage import Location, describe_storage_error, ensure_bucket, parse_uri, s3_client

__all__ = ["OutputNotWritableError", "prepare_output"]

PROBE_PREFIX = "_staging"


class OutputNotWritableError(MediaJobsError):
    """The spec's output location cannot be written: nothing was started."""

    headline = "output not writable"
    exit_code = 2  # retrying will not help: the bucket, the URI or the credentials must change


def prepare_output(uri: str, field: str = "output") -> Location:
    """The output location as a prefix, after proving that a write (and delete) there works.

    Raises:
        OutputNotWritableError: the bucket is missing and may not be created, or the
            credentials may not write or delete under the output prefix. The message
            names the spec field, the location and the fix.
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
    return output


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
