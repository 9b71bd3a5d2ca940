"""Listings in S3 key order: the order manifests, resume checks and score commits rely on.

S3 lists keys in byte order with '/' an ordinary character, so `a-b.jpg` < `a.jpg` < `a/x.jpg`
< `a0.jpg`. A local folder, and SeaweedFS's filer, list folder by folder with each folder's
entries in name order, so the folder `a` comes before `a-b.jpg` and `a.jpg`. Such a listing is
put in key order here: sorted when it fits in one page; otherwise walked folder by folder while
streaming, where an entry waits only until a later name has passed its key (a handful of
entries per folder level held, never the whole listing).
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StoredObject:
    """One listed object: its full URI, size in bytes and ETag (or mtime for files)."""

    uri: str
    size: int
    etag: str


def walk_local(folder: Path) -> Iterator[StoredObject]:
    """Files below `folder` in the order S3 lists keys (a folder sorts as its name + '/')."""
    entries = sorted(os.scandir(folder), key=lambda e: e.name + ("/" if e.is_dir(follow_symlinks=False) else ""))
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from walk_local(Path(entry.path))
        elif entry.is_file():
            stat = entry.stat()
            yield StoredObject(entry.path, stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}")


def lists_folder_by_folder(page: dict[str, Any]) -> bool:
    """Whether the store that answered this listing page walks folders (SeaweedFS) instead
    of listing in key order. Only the store knows, and it says so in its Server header."""
    headers = page.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return str(headers.get("server", "")).startswith("SeaweedFS")


def in_key_order(client, bucket: str, prefix: str, first_page: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The objects under `prefix` (ListObjectsV2 `Contents` items) in key order, from a store
    that lists folder by folder and answered `first_page` of a flat listing: a listing that
    fits in that page is sorted here (a page's worth of memory); a longer one is walked."""
    if not first_page.get("IsTruncated"):
        yield from sorted(first_page.get("Contents", []), key=lambda item: item["Key"])  # code points: byte order
    else:
        yield from walk_s3_folders(client, bucket, prefix)


def walk_s3_folders(client, bucket: str, prefix: str, page_size: int = 1000) -> Iterator[dict[str, Any]]:
    """The objects under `prefix` (their ListObjectsV2 `Contents` items) in key order, from a
    store that lists folder by folder. One delimited listing per folder.

    The store returns a folder's files and subfolders in name order, a subfolder named
    without its '/'. Every later entry's key is at least its name, so an entry whose key is
    below the name just listed can go out now; a subfolder waits for the siblings that
    extend its name with a character below '/' (`a-b.jpg` before `a/`)."""
    waiting: list[tuple[str, int, dict[str, Any] | None]] = []  # (key, tiebreak, item or None for a folder)
    tiebreak = itertools.count()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/", PaginationConfig={"PageSize": page_size})
    for page in pages:
        for name, key, item in _in_name_order(page):
            while waiting and waiting[0][0] < name:
                yield from _release(client, bucket, heapq.heappop(waiting), page_size)
            heapq.heappush(waiting, (key, next(tiebreak), item))
    while waiting:
        yield from _release(client, bucket, heapq.heappop(waiting), page_size)


def _in_name_order(page: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """A delimited page's files and subfolders as (name, key, item) in the store's name order."""
    files = [(item["Key"], item["Key"], item) for item in page.get("Contents", [])
             if not item["Key"].endswith("/")]  # "directory" marker objects
    folders = [(common["Prefix"][:-1], common["Prefix"], None) for common in page.get("CommonPrefixes", [])]
    return sorted(files + folders, key=lambda entry: entry[0])


def _release(client, bucket: str, entry: tuple[str, int, dict[str, Any] | None],
             page_size: int) -> Iterator[dict[str, Any]]:
    key, _, item = entry
    if item is None:
        yield from walk_s3_folders(client, bucket, key, page_size)
    else:
        yield item
