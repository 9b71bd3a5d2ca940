"""Checks and set-up before storage I/O: does a bucket exist, does a URI name one object, and
a bucket made where that is harmless (`MEDIAJOBS_CREATE_BUCKETS`)."""

from __future__ import annotations

import os
from pathlib import Path

from cluster.localstate import read_local_stack
from jobs.errors import StorageError
from jobs.storage.objects import STORAGE_HINTS, describe_storage_error, filesystem_for, parse_uri, s3_client
from jobs.storage.settings import S3Settings, resolve_s3_settings


def bucket_exists(uri: str) -> bool:
    """Whether the bucket of an s3 URI exists (always True for a local path).

    Raises:
        StorageError: the store would not say (no permission, unreachable, ...).
    """
    from botocore.exceptions import ClientError

    loc = parse_uri(uri)
    if loc.scheme != "s3":
        return True
    try:
        s3_client().head_bucket(Bucket=loc.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise StorageError(f"cannot use bucket {loc.bucket!r}: {describe_storage_error(exc)}") from None
    return True


def no_bucket_message(uri: str) -> str:
    """What to say when `uri`'s bucket does not exist (see `bucket_exists`)."""
    return f"cannot read {uri}: NoSuchBucket: {STORAGE_HINTS['NoSuchBucket']}"


def require_object(uri: str) -> None:
    """Check that `uri` names one object (or file) before it is read: a command given the
    URI of an input says what is wrong with it in one line.

    Raises:
        StorageError: the bucket does not exist, nothing has that name, it is a folder
            (a prefix), or the store refused to answer.
    """
    import pyarrow.fs as pafs

    loc = parse_uri(uri)
    try:
        kind = filesystem_for(loc).get_file_info(loc.fs_path).type
    except OSError as exc:  # pyarrow: denied, unreachable
        raise StorageError(f"cannot read {uri}: {describe_storage_error(exc)}") from None
    if kind == pafs.FileType.File:
        return
    if kind == pafs.FileType.Directory:
        raise StorageError(f"cannot read {uri}: it is a folder, not one {'object' if loc.scheme == 's3' else 'file'}; "
                           "name a file in it")
    if not bucket_exists(uri):
        raise StorageError(no_bucket_message(uri))
    raise StorageError(f"cannot read {uri}: no such {'object' if loc.scheme == 's3' else 'file'}; check the URI")


# Whether a missing bucket is created on first write: "auto" (the default) creates one
# only on the embedded local stack, which starts empty; anywhere else a missing bucket is
# most likely a typo, and creating it would pick a region, an owner and a bill for the
# user. "1" or "0" decide for every store.
CREATE_BUCKETS_VARIABLE = "MEDIAJOBS_CREATE_BUCKETS"


def may_create_buckets(settings: S3Settings | None = None) -> bool:
    choice = os.environ.get(CREATE_BUCKETS_VARIABLE, "auto").strip().lower()
    if choice in ("1", "true", "yes"):
        return True
    if choice in ("0", "false", "no"):
        return False
    settings = settings or resolve_s3_settings()
    if settings.source == "local-stack":
        return True
    stack = read_local_stack()
    return stack is not None and settings.endpoint is not None and settings.endpoint.rstrip("/") == stack.s3_endpoint


def ensure_bucket(uri: str) -> None:
    """Make sure the bucket of an s3 URI exists (or a local folder), creating it where allowed.

    Raises:
        StorageError: the bucket is missing and may not be created here (see
            `may_create_buckets`), or the store refused to show or create it.
    """
    from botocore.exceptions import ClientError

    loc = parse_uri(uri)
    if loc.scheme != "s3":
        try:
            Path(loc.key).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder {loc.key}: {exc.strerror or exc}") from None
        return
    if bucket_exists(uri):
        return
    if not may_create_buckets():
        raise StorageError(f"bucket {loc.bucket!r} does not exist; create it (e.g. `aws s3 mb s3://{loc.bucket}`), "
                           f"fix the URI, or set {CREATE_BUCKETS_VARIABLE}=1 to have jobs create missing buckets")
    try:
        s3_client().create_bucket(Bucket=loc.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") == "BucketAlreadyOwnedByYou":
            return  # another job created it a moment ago
        raise StorageError(f"cannot create bucket {loc.bucket!r}: {describe_storage_error(exc)}") from None
