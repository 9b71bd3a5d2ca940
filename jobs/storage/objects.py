"""Object storage: URIs, credentials, and the one place that builds S3 clients.

A URI is `s3://bucket/prefix/...` or a local path (`/data/x`, `./x`, `file:///x`).
Endpoint and credentials come from the environment / standard AWS config, or from
the embedded local stack when it is up and nothing else is configured (`jobs.storage.settings`).
Never from a spec file. Waiting out an outage is `jobs.storage.outage`.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from jobs.errors import StorageError
from jobs.storage.key_order import StoredObject, in_key_order, lists_folder_by_folder, walk_local
from jobs.storage.settings import S3Settings, resolve_s3_settings, settings_fingerprint


@dataclass(frozen=True)
class Location:
    """A parsed storage URI: `scheme` is "s3" or "file"; `path` has no scheme."""

    scheme: str
    bucket: str  # empty for local paths
    key: str  # object key / prefix inside the bucket; for file, the absolute path

    @property
    def uri(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}/"
        return self.key

    @property
    def fs_path(self) -> str:
        """The path as pyarrow filesystems and Ray Data readers want it (no scheme)."""
        return f"{self.bucket}/{self.key}".rstrip("/") if self.scheme == "s3" else self.key

    def join(self, *parts: str) -> Location:
        key = posixpath.join(self.key, *parts) if self.key else posixpath.join(*parts)
        return Location(self.scheme, self.bucket, key)

    def as_prefix(self) -> Location:
        """The same location with a trailing slash, for listing "folders"."""
        if self.key and not self.key.endswith("/"):
            return Location(self.scheme, self.bucket, self.key + "/")
        return self


def parse_uri(uri: str) -> Location:
    """Parse an `s3://` URI or a local path.

    Raises:
        StorageError: for schemes other than s3 and file, or an s3 URI without a bucket.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise StorageError("empty storage URI; use s3://bucket/prefix/ or a local path")
    parsed = urlparse(uri)
    # The bucket and key are split by hand, not taken from urlparse: a key is not a URL
    # path, and '#' or '?' in it (e.g. "take#2.jpg") would be cut off as a fragment or query.
    rest = uri.partition("://")[2]
    if parsed.scheme in ("s3", "s3a"):
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise StorageError(f"{uri!r} has no bucket; use s3://bucket/prefix/")
        return Location("s3", bucket, key.lstrip("/"))
    if parsed.scheme == "file":
        return Location("file", "", os.path.abspath("/" + rest.partition("/")[2]))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Location("file", "", os.path.abspath(os.path.expanduser(uri)))
    raise StorageError(f"unsupported URI scheme {parsed.scheme!r} in {uri!r}; use s3:// or a local path")


def filesystem_for(location: Location, settings: S3Settings | None = None):
    """The pyarrow filesystem for a location (S3 with our endpoint, or local)."""
    import pyarrow.fs as pafs

    if location.scheme == "file":
        return pafs.LocalFileSystem()
    return _s3_filesystem(settings_fingerprint(settings or resolve_s3_settings()))


@lru_cache(maxsize=8)
def _s3_filesystem(fingerprint: tuple):
    import pyarrow.fs as pafs

    endpoint, access_key, secret_key, region = fingerprint
    kwargs: dict = {"region": region, "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=5)}
    if access_key and secret_key:
        kwargs.update(access_key=access_key, secret_key=secret_key,
                      session_token=os.environ.get("AWS_SESSION_TOKEN"))
    if endpoint:
        parsed = urlparse(endpoint)
        # pyarrow does not read AWS_ENDPOINT_URL reliably (apache/arrow#49643): pass it.
        kwargs.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
    return pafs.S3FileSystem(**kwargs)


def s3_client(settings: S3Settings | None = None):
    """A boto3 S3 client for the resolved endpoint and credentials."""
    return _s3_client(settings_fingerprint(settings or resolve_s3_settings()))


@lru_cache(maxsize=8)
def _s3_client(fingerprint: tuple):
    import boto3
    from botocore.config import Config

    endpoint, access_key, secret_key, region = fingerprint
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") if access_key else None, region_name=region,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"},
                      max_pool_connections=32),
    )


def list_objects(uri: str, suffixes: tuple[str, ...] | None = None) -> Iterator[StoredObject]:
    """Yield the objects under a prefix (recursively), page by page, in key order.

    Raises:
        StorageError: when the prefix cannot be listed (no bucket, no permission, ...).
    """
    loc = parse_uri(uri).as_prefix()
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None
    for obj in (_list_s3(loc) if loc.scheme == "s3" else _list_local(loc)):
        name = obj.uri.rsplit("/", 1)[-1]
        if name.startswith(".") or (wanted and not name.lower().endswith(wanted)):
            continue
        yield obj


def _list_s3(loc: Location) -> Iterator[StoredObject]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for item in _listed_in_key_order(s3_client(), loc):
            if not item["Key"].endswith("/"):  # "directory" marker objects
                yield _stored(loc.bucket, item)
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"cannot list {loc.uri}: {describe_storage_error(exc)}") from None


def _listed_in_key_order(client, loc: Location) -> Iterator[dict]:
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=loc.bucket, Prefix=loc.key, PaginationConfig={"PageSize": 1000})
    for number, page in enumerate(pages):
        if number == 0 and lists_folder_by_folder(page):  # nothing yielded yet
            yield from in_key_order(client, loc.bucket, loc.key, page)
            return
        yield from page.get("Contents", [])


def _stored(bucket: str, item: dict) -> StoredObject:
    return StoredObject(f"s3://{bucket}/{item['Key']}", int(item["Size"]), item["ETag"].strip('"'))


def _list_local(loc: Location) -> Iterator[StoredObject]:
    root = Path(loc.key)
    if root.is_dir():
        yield from walk_local(root)


STORAGE_HINTS = {
    "NoSuchBucket": "the bucket does not exist; create it or fix the URI",
    "AccessDenied": "access denied; check the credentials in the environment or AWS config",
    "InvalidAccessKeyId": "unknown access key; check AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "wrong secret key; check AWS_SECRET_ACCESS_KEY",
}


# The same refusals as boto3 reports a HEAD request (no body, so only its status) and as
# pyarrow words them (its S3 errors carry no error code).
_REFUSAL_ALIASES = {"403": "AccessDenied", "Forbidden": "AccessDenied"}
_PYARROW_REFUSALS = {"ACCESS_DENIED": "AccessDenied", "INVALID_ACCESS_KEY_ID": "InvalidAccessKeyId",
                     "SIGNATURE_DOES_NOT_MATCH": "SignatureDoesNotMatch", "HTTP status 403": "AccessDenied"}


def refusal_code(exc: BaseException) -> str | None:
    """The S3 error code of a refusal no retry changes (denied, unknown key, wrong secret,
    no such bucket), from boto3's or pyarrow's error; None for anything else."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        code = _REFUSAL_ALIASES.get(code, code)
        return code if code in STORAGE_HINTS else None
    text = str(exc)
    return next((code for marker, code in _PYARROW_REFUSALS.items() if marker in text), None)


def describe_storage_error(exc: BaseException) -> str:
    """A one-line reason for a storage failure, with a hint for the common ones."""
    code = refusal_code(exc)
    if code is not None:
        return f"{code}: {STORAGE_HINTS[code]}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "Could not connect" in text or "Connect timeout" in text or "connection refused" in text.lower():
        return f"{text} (is the S3 endpoint up? `mediajobs local status` shows the local one)"
    if "Unable to locate credentials" in text:
        return f"{text} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or run `mediajobs local up`)"
    return text


def read_bytes(uri: str) -> bytes:
    """The whole content of one object or file.

    Raises:
        OSError: (pyarrow) or StorageError: (boto3) when it cannot be read.
    """
    loc = parse_uri(uri)
    if _pyarrow_refuses(loc):
        return _boto3_body(loc).read()
    fs = filesystem_for(loc)
    with fs.open_input_stream(loc.fs_path) as stream:
        return stream.read()


def read_sized(uri: str, size: int) -> bytearray:
    """The whole content of an object listed as `size` bytes: from S3 in one GET through
    obstore (`jobs.storage.object_gets`: half the CPU per object of pyarrow's), else read
    straight into one buffer of that size (`read_bytes` holds it twice for a moment).

    Raises:
        OSError: (pyarrow) or StorageError: (boto3) when it cannot be read.
    """
    loc = parse_uri(uri)
    if _pyarrow_refuses(loc) or size <= 0:
        return bytearray(read_bytes(uri))
    if loc.scheme == "s3":
        from jobs.storage.object_gets import UnaddressableKeyError, get_whole

        try:
            return get_whole(loc.bucket, loc.key)
        except UnaddressableKeyError:
            pass  # e.g. a tab in the key, which S3 allows: read it through pyarrow below
    data, got = bytearray(size), 0
    with filesystem_for(loc).open_input_stream(loc.fs_path) as stream:
        view = memoryview(data)
        while got < size and (n := stream.readinto(view[got:])):
            got += n
        rest = stream.read()  # the object grew since it was listed
    return data[:got] + rest if got < size or rest else data


def copy_to_file(uri: str, out: BinaryIO, chunk_bytes: int = 8 * 1024 * 1024) -> None:
    """Stream one object or file into an open binary file, a chunk at a time.

    Raises:
        OSError: (pyarrow) or StorageError: (boto3) when it cannot be read.
    """
    loc = parse_uri(uri)
    if _pyarrow_refuses(loc):
        for chunk in _boto3_body(loc).iter_chunks(chunk_bytes):
            out.write(chunk)
        return
    with filesystem_for(loc).open_input_stream(loc.fs_path) as remote:
        while chunk := remote.read(chunk_bytes):
            out.write(chunk)


def needs_folders(loc: Location) -> bool:
    """Whether writes under `loc` need their folders made first: only on a file system.

    On S3 a "folder" made by pyarrow's recursive `create_dir` is an empty marker object at
    every parent key, outside the prefix a job writes to, and it replaces an object that
    already has that key; objects need no folders there, so writers are told not to.
    """
    return loc.scheme == "file"


def _pyarrow_refuses(loc: Location) -> bool:
    """Keys pyarrow cannot address: it raises ArrowInvalid ("Empty path component") for an
    empty segment, as in "a//b.jpg", which S3 allows and sloppy path joins produce."""
    return loc.scheme == "s3" and "//" in loc.key


def _boto3_body(loc: Location):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return s3_client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"cannot read {loc.uri}: {describe_storage_error(exc)}") from None


def write_bytes(uri: str, data: bytes) -> None:
    loc = parse_uri(uri)
    fs = filesystem_for(loc)
    if loc.scheme == "file":
        Path(loc.key).parent.mkdir(parents=True, exist_ok=True)
    with fs.open_output_stream(loc.fs_path) as stream:
        stream.write(data)


def exists(uri: str) -> bool:
    """Raises StorageError when the store refuses to say (denied, unknown key)."""
    import pyarrow.fs as pafs

    return _file_type(uri) != pafs.FileType.NotFound


def is_file(uri: str) -> bool:
    """True for an object (or local file), False for a prefix (directory) or nothing.

    Raises:
        StorageError: the store refused to say (denied, unknown key).
    """
    import pyarrow.fs as pafs

    return _file_type(uri) == pafs.FileType.File


def _file_type(uri: str):
    loc = parse_uri(uri)
    try:
        return filesystem_for(loc).get_file_info(loc.fs_path).type
    except PermissionError as exc:
        raise StorageError(f"cannot read {uri}: {exc.strerror or exc}") from None
    except OSError as exc:
        # A refusal is the user's to fix: one line, not a traceback. Anything else (an
        # endpoint that does not answer) stays an OSError, which callers wait out.
        if refusal_code(exc) is None:
            raise
        raise StorageError(f"cannot read {uri}: {describe_storage_error(exc)}") from None


def delete_prefix(uri: str) -> int:
    """Delete every object under a prefix; returns how many were deleted."""
    loc = parse_uri(uri).as_prefix()
    if loc.scheme == "file":
        import shutil

        if Path(loc.key).exists():
            count = sum(1 for _ in _list_local(loc))
            shutil.rmtree(loc.key)
            return count
        return 0
    client = s3_client()
    count, batch = 0, []
    for obj in _list_s3(loc):
        batch.append({"Key": parse_uri(obj.uri).key})
        if len(batch) == 1000:
            client.delete_objects(Bucket=loc.bucket, Delete={"Objects": batch, "Quiet": True})
            count, batch = count + len(batch), []
    if batch:
        client.delete_objects(Bucket=loc.bucket, Delete={"Objects": batch, "Quiet": True})
        count += len(batch)
    return count


def upload_file(path: str | Path, uri: str) -> None:
    loc = parse_uri(uri)
    if loc.scheme == "file":
        import shutil

        Path(loc.key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, loc.key)
        return
    s3_client().upload_file(str(path), loc.bucket, loc.key)


def download_file(uri: str, path: str | Path) -> None:
    loc = parse_uri(uri)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if loc.scheme == "file":
        import shutil

        shutil.copyfile(loc.key, path)
        return
    s3_client().download_file(loc.bucket, loc.key, str(path))


def download_prefix(uri: str, dest: str | Path) -> Path:
    """Copy every object under a prefix into a local directory, keeping relative keys."""
    loc = parse_uri(uri).as_prefix()
    dest = Path(dest)
    for obj in list_objects(loc.uri):
        rel = parse_uri(obj.uri).key[len(loc.key):]
        target = (dest / rel).resolve()
        if dest.resolve() not in target.parents:
            raise StorageError(f"refusing to write {obj.uri} outside {dest}")
        download_file(obj.uri, target)
    return dest


def upload_dir(src: str | Path, uri: str) -> int:
    """Copy a local directory tree under a prefix; returns the number of files."""
    src, loc, count = Path(src), parse_uri(uri).as_prefix(), 0
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        upload_file(path, loc.join(path.relative_to(src).as_posix()).uri)
        count += 1
    return count

