"""Ingest: CIFAR-10 from its python tarball and local folders, into a local directory (fast
tier) and into the real local S3 server (integration tier)."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
from support.ingest_checks import (
    PER_BATCH,
    TEST_COUNT,
    TOTAL,
    check_cifar_objects,
    relative_contents,
    write_media_tree,
)
from support.media import (
    CIFAR10_LABELS,
    cifar10_batches,
    pack_cifar10_tarball,
    write_cifar10_tarball,
)

from jobs.datasets import cifar10, ingest
from jobs.datasets.ingest import IngestError, ingest_cifar10, ingest_folder


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    return write_cifar10_tarball(tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz",
                                 per_batch=PER_BATCH, test_count=TEST_COUNT, seed=5)


# --- CIFAR-10, local destination ----------------------------------------------------------


def test_cifar10_tarball_to_local_dir_then_rerun_skips_everything(tarball, tmp_path):
    dest = str(tmp_path / "cifar10")
    calls: list[tuple[int, int]] = []
    first = ingest_cifar10(dest, tarball, progress=lambda done, total: calls.append((done, total)))

    assert first["uploaded"] == TOTAL and first["skipped"] == 0
    assert first["images"] == {"train": 5 * PER_BATCH, "test": TEST_COUNT}
    assert first["bytes"] == sum(p.stat().st_size for p in (tmp_path / "cifar10").rglob("*.png"))
    assert calls[0] == (0, TOTAL) and calls[-1] == (TOTAL, TOTAL)
    assert [done for done, _ in calls] == list(range(TOTAL + 1))
    check_cifar_objects(dest, tarball)

    again = ingest_cifar10(dest, str(tarball))
    assert again == {"uploaded": 0, "skipped": TOTAL, "bytes": 0, "images": first["images"]}


def test_cifar10_rewrites_a_damaged_image(tarball, tmp_path):
    dest = tmp_path / "cifar10"
    ingest_cifar10(str(dest), tarball)
    victim = sorted(dest.rglob("*.png"))[3]
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF  # same size, different content: only the MD5 tells
    victim.write_bytes(bytes(data))

    again = ingest_cifar10(str(dest), tarball)
    assert (again["uploaded"], again["skipped"]) == (1, TOTAL - 1)
    check_cifar_objects(str(dest), tarball)


def test_cifar10_repeated_file_names_keep_both_images(tmp_path):
    batches = cifar10_batches(per_batch=4, test_count=2, seed=1)
    batch = batches["data_batch_2"]
    batch[b"labels"][1] = batch[b"labels"][0]
    batch[b"filenames"][1] = batch[b"filenames"][0]
    tarball = pack_cifar10_tarball(tmp_path / "dup.tar.gz", batches)

    result = ingest_cifar10(str(tmp_path / "out"), tarball)
    assert result["uploaded"] == 5 * 4 + 2
    name = batch[b"filenames"][0].decode()
    folder = tmp_path / "out" / "train" / CIFAR10_LABELS[batch[b"labels"][0]]
    stem = name.removesuffix(".png")
    assert (folder / name).exists() and (folder / f"{stem}_5.png").exists()  # 4 images in batch 1, so index 5


def test_cifar10_without_source_reads_the_downloaded_tarball_the_same_way(tmp_path, monkeypatch):
    # The download itself needs internet and 170 MB: a tarball in the official format stands
    # in for the file it fetches, and goes through the same restricted reader.
    tarball = write_cifar10_tarball(tmp_path / "cache" / "cifar-10-python.tar.gz", per_batch=2, test_count=2)
    monkeypatch.setattr(cifar10, "_fetch_tarball", lambda: tarball)

    result = ingest_cifar10(str(tmp_path / "out"))
    assert (result["uploaded"], result["images"]) == (12, {"train": 10, "test": 2})
    assert result == ingest_cifar10(str(tmp_path / "again"), tarball)  # same as naming the file


def test_a_downloaded_tarball_with_code_in_its_pickles_is_refused(tmp_path, monkeypatch):
    batches = cifar10_batches(per_batch=2, test_count=2)
    batches["data_batch_1"] = pickle.dumps(_RunsCode())
    tarball = pack_cifar10_tarball(tmp_path / "cifar-10-python.tar.gz", batches)
    monkeypatch.setattr(cifar10, "_fetch_tarball", lambda: tarball)
    with pytest.raises(IngestError, match="unexpected global"):
        ingest_cifar10(str(tmp_path / "out"))


def test_cifar10_download_failure_says_to_pass_source(tmp_path, monkeypatch):
    # The network failure is faked: these machines have no internet, others do.
    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: "
                        "None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar10, "_fetch_tarball", offline)
    with pytest.raises(IngestError, match=r"could not download CIFAR-10.*internet.*--source PATH"):
        ingest_cifar10(str(tmp_path))


# --- CIFAR-10: bad tarballs ----------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "absent.tar.gz", r"absent\.tar\.gz does not exist; pass the cifar-10-python\.tar\.gz"),
    (lambda d: d, r"is a folder; pass the cifar-10-python\.tar\.gz"),
    (lambda d: "s3://media/cifar-10-python.tar.gz", r"--source must be a local file, not s3://media/"),
    (lambda d: _write(d / "notes.tar.gz", b"just text\n" * 100), r"not a readable tar\.gz archive"),
    (lambda d: _write(d / "cut.tar.gz", (d.parent / "good.tar.gz").read_bytes()[:3000]),
     r"not a readable tar\.gz archive"),
    (lambda d: pack_cifar10_tarball(d / "partial.tar.gz", _without(cifar10_batches(2, 2), "test_batch")),
     r"lacks the CIFAR-10 member\(s\) test_batch"),
    (lambda d: pack_cifar10_tarball(d / "evil.tar.gz", {**cifar10_batches(2, 2),
                                                         "data_batch_3": pickle.dumps(_RunsCode(), protocol=2)}),
     r"data_batch_3 is not a CIFAR-10 python batch \(unexpected global posix\.system\)"),
    (lambda d: pack_cifar10_tarball(d / "keys.tar.gz", {**cifar10_batches(2, 2), "test_batch": {b"images": []}}),
     r"test_batch lacks the key\(s\) \[b'data', b'labels', b'filenames'\]"),
    (lambda d: pack_cifar10_tarball(d / "path.tar.gz", _renamed(cifar10_batches(2, 2), b"../../escape.png")),
     r"data_batch_1 has unusable file names, e\.g\. '\.\./\.\./escape\.png'"),
])
def test_bad_tarball_is_a_clear_error(tmp_path, make, message):
    write_cifar10_tarball(tmp_path / "good.tar.gz", per_batch=2, test_count=2)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    with pytest.raises(IngestError, match=message):
        ingest_cifar10(str(tmp_path / "out"), make(inputs))
    assert not (tmp_path / "out").exists()  # nothing is written before the input is known good


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _without(batches: dict, member: str) -> dict:
    return {name: batch for name, batch in batches.items() if name != member}


def _renamed(batches: dict, filename: bytes) -> dict:
    batches["data_batch_1"][b"filenames"][0] = filename
    return batches


# --- folders, local destination ------------------------------------------------------------------


def test_folder_to_local_dir_skips_unchanged_and_reuploads_a_changed_file(tmp_path):
    src, dest = tmp_path / "src", str(tmp_path / "dest")
    wanted = write_media_tree(src)
    assert len(wanted) == 9

    first = ingest_folder(src, dest)
    assert first == {"uploaded": 9, "skipped": 0, "bytes": sum((src / rel).stat().st_size for rel in wanted)}
    assert relative_contents(dest) == {rel: (src / rel).read_bytes() for rel in wanted}
    assert not (tmp_path / "dest" / ".DS_Store").exists() and not (tmp_path / "dest" / ".cache").exists()

    assert ingest_folder(src, dest) == {"uploaded": 0, "skipped": 9, "bytes": 0}

    changed = src / "photos" / "2024" / "june" / "photo_01.jpg"
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0x55  # same size: only the MD5 can tell
    changed.write_bytes(bytes(data))
    calls: list[tuple[int, int]] = []
    third = ingest_folder(src, dest, progress=lambda done, total: calls.append((done, total)))
    assert third == {"uploaded": 1, "skipped": 8, "bytes": len(data)}
    assert (tmp_path / "dest" / "photos" / "2024" / "june" / "photo_01.jpg").read_bytes() == bytes(data)
    assert calls[0] == (0, 9) and calls[-1] == (9, 9)


def test_folder_errors(tmp_path):
    with pytest.raises(IngestError, match=r"missing does not exist; pass the local folder"):
        ingest_folder(tmp_path / "missing", str(tmp_path / "dest"))
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(IngestError, match=r"file\.jpg is not a folder"):
        ingest_folder(tmp_path / "file.jpg", str(tmp_path / "dest"))
    with pytest.raises(IngestError, match=r"destination .*inside the source folder"):
        ingest_folder(tmp_path, str(tmp_path / "copy"))


def test_multipart_etags_are_recognised():
    # ETags as S3 computes them for an upload in 8 MiB parts and in 5 MiB parts (another tool's).
    data = bytes(range(256)) * (20 * 1024 * 1024 // 256 + 7)

    def multipart_etag(part_size: int) -> str:
        parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
        digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        return f'"{digest}-{len(parts)}"'

    chunks = lambda: [data[i:i + 1_000_000] for i in range(0, len(data), 1_000_000)]  # noqa: E731
    assert ingest._etag_matches(multipart_etag(8 * 1024 * 1024), len(data), chunks)
    assert ingest._etag_matches(multipart_etag(5 * 1024 * 1024), len(data), chunks)
    assert ingest._etag_matches(hashlib.md5(data).hexdigest(), len(data), chunks)
    assert not ingest._etag_matches(multipart_etag(8 * 1024 * 1024), len(data), lambda: [data[:-1] + b"?"])
    assert not ingest._etag_matches("0123abcd-x", len(data), chunks)


# --- the same against the real local S3 server -------------------------------------------------
