"""Ingest: CIFAR-10 from its python tarball and local folders, into a local directory (fast
tier) and into the real local S3 server (integration tier)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from support.ingest_checks import PER_BATCH, TEST_COUNT, TOTAL, check_cifar_objects, relative_contents, write_media_tree
from support.media import (
    write_cifar10_tarball,
)

from jobs.datasets.ingest import ingest_cifar10, ingest_folder
from jobs.storage import objects as storage


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    return write_cifar10_tarball(tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz",
                                 per_batch=PER_BATCH, test_count=TEST_COUNT, seed=5)


def test_cifar10_tarball_to_s3_then_rerun_skips_everything(local_stack, tarball):
    dest = "s3://it-ingest-cifar10/cifar10/"
    first = ingest_cifar10(dest, tarball)
    assert (first["uploaded"], first["skipped"]) == (TOTAL, 0)
    check_cifar_objects(dest, tarball)
    for obj in storage.list_objects(dest):
        assert obj.etag == hashlib.md5(storage.read_bytes(obj.uri)).hexdigest()

    again = ingest_cifar10(dest, tarball)
    assert (again["uploaded"], again["skipped"], again["bytes"]) == (0, TOTAL, 0)


def test_folder_to_s3_skips_unchanged_and_reuploads_a_changed_file(local_stack, tmp_path):
    src, dest = tmp_path / "src", "s3://it-ingest-folder/media/"
    wanted = write_media_tree(src)
    # Larger than the 8 MiB multipart threshold: its ETag is not a plain MD5.
    big = src / "video" / "clip.mp4"
    big.parent.mkdir()
    big.write_bytes(np.random.default_rng(0).integers(0, 256, size=9 * 1024 * 1024 + 123, dtype=np.uint8).tobytes())
    wanted.append("video/clip.mp4")

    first = ingest_folder(src, dest)
    assert (first["uploaded"], first["skipped"]) == (len(wanted), 0)
    assert relative_contents(dest) == {rel: (src / rel).read_bytes() for rel in wanted}
    big_object = next(o for o in storage.list_objects(dest) if o.uri.endswith("clip.mp4"))
    assert big_object.etag.endswith("-2")

    assert ingest_folder(src, dest) == {"uploaded": 0, "skipped": len(wanted), "bytes": 0}

    changed = src / "photos" / "drawing_00.png"
    data = bytearray(changed.read_bytes())
    data[-30] ^= 0x01
    changed.write_bytes(bytes(data))
    third = ingest_folder(src, dest)
    assert (third["uploaded"], third["skipped"]) == (1, len(wanted) - 1)
    assert storage.read_bytes(dest + "photos/drawing_00.png") == bytes(data)
