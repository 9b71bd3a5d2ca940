"""Copy media into object storage: CIFAR-10 from its python tarball, handwritten digits,
or a local folder.

Uploads run in parallel and are incremental: an object that already exists with the
same size and MD5 is skipped, so an interrupted ingest resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np

from jobs.datasets.cifar10 import CIFAR10_LABELS, download_cifar10, encode_png, image_keys, read_cifar10_tarball
from jobs.errors import IngestError, StorageError
from jobs.storage import objects as storage
from jobs.storage.checks import ensure_bucket

__all__ = ["CIFAR10_LABELS", "IngestError", "ProgressCallback", "ingest_cifar10", "ingest_digits", "ingest_folder"]

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(done, total)` from the calling thread, once at 0 and after each object."""


UPLOAD_THREADS = 16
# Multipart size for file uploads, boto3's default: ETags of objects we uploaded in parts
# are predictable from it, which is what lets a re-run recognise unchanged large files.
_PART_SIZE = 8 * 1024 * 1024
_READ_CHUNK = 1024 * 1024


def ingest_cifar10(dest: str, source: str | Path | None = None,
                   progress: ProgressCallback | None = None) -> dict:
    """Write CIFAR-10 as PNGs under `dest/train/<label>/` and `dest/test/<label>/`.

    With `source`, the official python tarball (`cifar-10-python.tar.gz`) is read as a
    stream, never extracted to disk; file names come from its batches. The batches are
    pickles: they are loaded only from the file the user names here, and only with the
    few numpy globals a CIFAR-10 batch needs (anything else in them is refused).
    Without `source`, the same tarball is downloaded from the official site into Keras's
    dataset cache (internet access needed), checked against its published MD5, and read
    the same way.

    Args:
        dest: an `s3://bucket/prefix/` URI or a local directory; a missing bucket is created where
            `jobs.storage.checks.may_create_buckets` allows it (the local stack), else refused.
        source: the path of `cifar-10-python.tar.gz`, or None to download it.
        progress: optional `progress(done, total)` callback, e.g. for a progress bar.

    Returns:
        `{"uploaded": n, "skipped": m, "bytes": bytes uploaded, "images": {"train": n, "test": n}}`.

    Raises:
        IngestError: when the tarball is missing or not in the CIFAR-10 python format, or
            the download fails.
        StorageError: when the destination cannot be listed or written.
    """
    if source is None:
        label_names, splits = download_cifar10()
    elif str(source).startswith(("s3://", "s3a://")):
        raise IngestError(f"--source must be a local file, not {source}; download the tarball first")
    else:
        label_names, splits = read_cifar10_tarball(Path(source))
    destination = _Destination(dest)
    total = sum(len(split.labels) for split in splits.values())

    tasks = (partial(_store_png, destination, rel, split.images[index])
             for split_name, split in splits.items()
             for index, rel in enumerate(image_keys(split_name, split, label_names)))
    result = _run_uploads(tasks, total, progress)
    result["images"] = {name: len(split.labels) for name, split in splits.items()}
    return result


def ingest_digits(dest: str, source: str = "sklearn", limit: int | None = None,
                  progress: ProgressCallback | None = None) -> dict:
    """Write real handwritten digits as 28x28 grayscale PNGs under `dest/<digit>/`.

    `source` "sklearn" needs no download (1,797 digits shipped with scikit-learn, upscaled
    from 8x8); "mnist" downloads MNIST with tf.keras. See `jobs.datasets.digits`.

    Returns:
        `{"uploaded": n, "skipped": m, "bytes": bytes uploaded, "images": n}`.

    Raises:
        IngestError: an unknown source, or MNIST cannot be downloaded.
        StorageError: when the destination cannot be listed or written.
    """
    from jobs.datasets.digits import digit_images

    images = list(digit_images(source, limit))
    destination = _Destination(dest)
    tasks = (partial(_store_png, destination, rel, image) for rel, image in images)
    result = _run_uploads(tasks, len(images), progress)
    result["images"] = len(images)
    return result


def ingest_folder(src: Path, dest: str, progress: ProgressCallback | None = None) -> dict:
    """Upload every file under `src` to `dest`, keeping relative paths.

    Hidden files and folders (a name starting with ".") are left out. A file whose object
    already exists with the same size and MD5 is skipped: for S3 the MD5 is the ETag of a
    single-part upload, or recomputed per part for one uploaded in 8 MiB parts; objects
    written another way (other part sizes, SSE-KMS) are uploaded again.

    Args:
        src: a local directory.
        dest: an `s3://bucket/prefix/` URI or a local directory; a missing bucket is created where
            `jobs.storage.checks.may_create_buckets` allows it (the local stack), else refused.
        progress: optional `progress(done, total)` callback.

    Returns:
        `{"uploaded": n, "skipped": m, "bytes": bytes uploaded}`.

    Raises:
        IngestError: when `src` is not a directory, or a local `dest` lies inside it.
        StorageError: when the destination cannot be listed or written.
    """
    src = Path(src).expanduser()
    if not src.exists():
        raise IngestError(f"{src} does not exist; pass the local folder of media files to upload")
    if not src.is_dir():
        raise IngestError(f"{src} is not a folder; pass the folder that holds the media files")
    location = storage.parse_uri(dest)
    if location.scheme == "file":
        target, root = Path(location.key).resolve(), src.resolve()
        if target == root or root in target.parents:
            raise IngestError(f"destination {target} is inside the source folder {root}; choose another one")
    files = list(_visible_files(src))
    destination = _Destination(dest)
    tasks = (partial(destination.store_file, rel, path) for path, rel in files)
    return _run_uploads(tasks, len(files), progress)


# --- destinations and uploads ---------------------------------------------------------


class _Destination:
    """A destination prefix: its objects as listed once, and one S3 client for all threads."""

    def __init__(self, uri: str) -> None:
        ensure_bucket(uri)
        self.location = storage.parse_uri(uri).as_prefix()
        # Resolve endpoint and credentials once, not once per object.
        self._client = storage.s3_client() if self.location.scheme == "s3" else None
        prefix = self.location.key
        self.existing = {storage.parse_uri(obj.uri).key[len(prefix):].replace(os.sep, "/"): obj
                         for obj in storage.list_objects(self.location.uri)}

    def store_bytes(self, rel: str, data: bytes) -> int | None:
        """Write `data` at `rel` unless it is already there; bytes written, or None if skipped."""
        if self._is_current(rel, len(data), lambda: [data]):
            return None
        uri = self.location.join(rel).uri
        with _storage_errors(uri):
            if self._client is not None:
                self._client.put_object(Bucket=self.location.bucket, Key=self.location.join(rel).key, Body=data,
                                        ContentType=_content_type(rel))
            else:
                storage.write_bytes(uri, data)
        return len(data)

    def store_file(self, rel: str, path: Path) -> int | None:
        """Upload the file at `path` to `rel` unless it is already there."""
        size = path.stat().st_size
        if self._is_current(rel, size, lambda: _read_chunks(path)):
            return None
        uri = self.location.join(rel).uri
        with _storage_errors(uri):
            if self._client is not None:
                from boto3.s3.transfer import TransferConfig

                config = TransferConfig(multipart_threshold=_PART_SIZE, multipart_chunksize=_PART_SIZE,
                                        max_concurrency=4)
                self._client.upload_file(str(path), self.location.bucket, self.location.join(rel).key,
                                         ExtraArgs={"ContentType": _content_type(rel)}, Config=config)
            else:
                storage.upload_file(path, uri)
        return size

    def _is_current(self, rel: str, size: int, chunks: Callable[[], Iterable[bytes]]) -> bool:
        stored = self.existing.get(rel)
        if stored is None or stored.size != size:
            return False
        if self.location.scheme == "file":
            # Local listings carry no checksum: hash the stored copy.
            return _md5_hex(chunks()) == _md5_hex(_read_chunks(Path(stored.uri)))
        return _etag_matches(stored.etag, size, chunks)


@contextmanager
def _storage_errors(uri: str) -> Iterator[None]:
    """Turn a failed write into a StorageError that names the object."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, S3UploadFailedError, OSError) as exc:
        raise StorageError(f"cannot write {uri}: {storage.describe_storage_error(exc)}") from exc


def _run_uploads(tasks: Iterable[Callable[[], int | None]], total: int,
                 progress: ProgressCallback | None) -> dict:
    """Run upload tasks on a thread pool, at most a few per thread in flight at once.

    Progress is reported from the calling thread, so the callback needs no locking. The
    first failure cancels what has not started and is raised.
    """
    uploaded = skipped = written = done = 0
    if progress:
        progress(0, total)
    tasks = iter(tasks)
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS, thread_name_prefix="ingest") as pool:
        pending: set[Future] = set()
        try:
            while True:
                for task in tasks:
                    pending.add(pool.submit(task))
                    if len(pending) >= UPLOAD_THREADS * 4:
                        break
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    size = future.result()
                    if size is None:
                        skipped += 1
                    else:
                        uploaded, written = uploaded + 1, written + size
                    done += 1
                    if progress:
                        progress(done, total)
        except BaseException as exc:
            for future in pending:
                future.cancel()
            if isinstance(exc, StorageError):
                raise StorageError(f"{exc.message} ({uploaded} objects were written before this; run the "
                                   f"ingest again to resume, unchanged objects are skipped)") from exc
            raise
    return {"uploaded": uploaded, "skipped": skipped, "bytes": written}


def _visible_files(src: Path) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and path.is_file():
                yield path, path.relative_to(src).as_posix()


def _content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            yield chunk


def _md5_hex(chunks: Iterable[bytes]) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _etag_matches(etag: str, size: int, chunks: Callable[[], Iterable[bytes]]) -> bool:
    """Whether an S3 ETag is the one our upload of this content would have produced.

    A single-part ETag is the MD5 of the content. A multipart one is the MD5 of the
    parts' MD5s, then "-<parts>"; we try our own part size and the whole-MiB size that
    gives that many parts (the usual choice of other tools).
    """
    etag = etag.strip('"').lower()
    if "-" not in etag:
        return _md5_hex(chunks()) == etag
    digest, _, count = etag.partition("-")
    if not count.isdigit() or int(count) < 1:
        return False
    parts = int(count)
    mib = 1024 * 1024
    per_part = -(-size // parts)  # ceil division
    inferred = -(-per_part // mib) * mib
    candidates = {part_size for part_size in (_PART_SIZE, inferred)
                  if part_size > 0 and -(-size // part_size) == parts}
    return any(_multipart_md5(chunks(), part_size) == digest for part_size in candidates)


def _multipart_md5(chunks: Iterable[bytes], part_size: int) -> str:
    part_digests, part, filled = [], hashlib.md5(usedforsecurity=False), 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            take = min(len(view), part_size - filled)
            part.update(view[:take])
            view, filled = view[take:], filled + take
            if filled == part_size:
                part_digests.append(part.digest())
                part, filled = hashlib.md5(usedforsecurity=False), 0
    if filled:
        part_digests.append(part.digest())
    return hashlib.md5(b"".join(part_digests), usedforsecurity=False).hexdigest()


def _store_png(destination: _Destination, rel: str, image: np.ndarray) -> int | None:
    return destination.store_bytes(rel, encode_png(image))
