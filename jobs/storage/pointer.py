"""A small object written only over the version its writer read: the commit point of an
incremental run (`_manifest/CURRENT`). On S3 the condition is the store's (`If-Match` on
the ETag read, `If-None-Match: *` where there was none); on a local folder it is checked
under the output's lease, which keeps every other run out."""

from __future__ import annotations

import hashlib
from pathlib import Path

from jobs.errors import MediaJobsError, StorageError
from jobs.storage.checks import no_bucket_message
from jobs.storage.objects import describe_storage_error, parse_uri, refusal_code, s3_client

__all__ = ["PointerMovedError", "read_pointer", "write_pointer"]

_CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict")


class PointerMovedError(MediaJobsError):
    """The pointer changed since it was read: another run wrote it."""

    headline = "run fenced out"


def read_pointer(uri: str) -> tuple[bytes, str] | None:
    """(content, version tag), or None where there is no object.

    Raises:
        StorageError: the bucket does not exist, or the store refuses the credentials.
    """
    from botocore.exceptions import ClientError

    location = parse_uri(uri)
    if location.scheme != "s3":
        try:
            data = Path(location.key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):  # a file where the output's folder would be
            return None
        return data, hashlib.sha256(data).hexdigest()
    client = s3_client()
    try:
        response = client.get_object(Bucket=location.bucket, Key=location.key)
    except client.exceptions.NoSuchKey:
        return None
    except client.exceptions.NoSuchBucket:
        raise StorageError(no_bucket_message(uri)) from None
    except ClientError as exc:
        if refusal_code(exc) is None:
            raise  # the store's trouble (a 503): the caller's retry waits it out
        raise StorageError(f"cannot read {uri}: {describe_storage_error(exc)}") from None
    return response["Body"].read(), response["ETag"]


def write_pointer(uri: str, data: bytes, expected: str | None) -> str:
    """Write `data` if the object is still at version `expected` (None: if there is none);
    returns the new version tag. `data` must be unique to this write (it names the run):
    a write whose answer was lost, retried and refused, is then recognised as this one.

    Raises:
        PointerMovedError: it is not.
    """
    from botocore.exceptions import ClientError

    location = parse_uri(uri)
    if location.scheme != "s3":
        current = read_pointer(uri)
        if (current[1] if current else None) != expected:
            raise PointerMovedError(f"{uri} changed since this run read it")
        path = Path(location.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.writing")
        scratch.write_bytes(data)
        scratch.replace(path)  # atomic: a reader sees the old pointer or the new one
        return hashlib.sha256(data).hexdigest()
    condition = {"IfMatch": expected} if expected else {"IfNoneMatch": "*"}
    try:
        return s3_client().put_object(Bucket=location.bucket, Key=location.key, Body=data, **condition)["ETag"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _CONFLICTS:
            raise
    current = read_pointer(uri)
    if current is not None and current[0] == data:
        return current[1]  # the first attempt landed; botocore's retry of it was refused
    raise PointerMovedError(f"{uri} changed since this run read it")
