"""What ingest tests of both tiers check: a CIFAR-10 tarball's images as stored, a folder
tree of media to upload."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from jobs.storage import objects as storage
from support.media import CIFAR10_LABELS, read_cifar10_tarball, write_image_folder

PER_BATCH, TEST_COUNT = 12, 10
TOTAL = 5 * PER_BATCH + TEST_COUNT


def expected_cifar_images(tarball: Path) -> dict[str, np.ndarray]:
    """`<split>/<label>/<filename>` -> (32, 32, 3) pixels, straight from the pickles."""
    expected = {}
    for member, batch in read_cifar10_tarball(tarball).items():
        if member == "batches.meta":
            continue
        split = "test" if member == "test_batch" else "train"
        for row, label, name in zip(batch[b"data"], batch[b"labels"], batch[b"filenames"]):
            red, green, blue = row[:1024], row[1024:2048], row[2048:]
            pixels = np.stack([red, green, blue], axis=-1).reshape(32, 32, 3)
            expected[f"{split}/{CIFAR10_LABELS[label]}/{name.decode()}"] = pixels
    return expected


def decode_image(data: bytes) -> Image.Image:
    """An image file's bytes, decoded (PIL)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def check_cifar_objects(dest: str, tarball: Path) -> None:
    """`dest` holds exactly the tarball's images, as PNGs with its pixels, under <split>/<label>/."""
    expected = expected_cifar_images(tarball)
    prefix = storage.parse_uri(dest).as_prefix().key
    stored = {storage.parse_uri(o.uri).key[len(prefix):]: o for o in storage.list_objects(dest)}
    assert sorted(stored) == sorted(expected)
    assert {key.split("/")[1] for key in stored} <= set(CIFAR10_LABELS)
    for key, pixels in expected.items():
        image = decode_image(storage.read_bytes(stored[key].uri))
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32)), key
        np.testing.assert_array_equal(np.asarray(image), pixels, err_msg=key)


def write_media_tree(root: Path) -> list[str]:
    """A folder with nested images and hidden files; returns the relative paths to upload."""
    write_image_folder(root / "photos", jpeg=3, png=2)
    write_image_folder(root / "photos" / "2024" / "june", jpeg=2, png=1, seed=10)
    (root / "notes.txt").write_text("not media, uploaded all the same\n")
    (root / ".DS_Store").write_bytes(b"\x00hidden")
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.jpg").write_bytes(b"hidden folder")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def relative_contents(dest: str) -> dict[str, bytes]:
    """Every object under `dest`: its name relative to `dest` -> its bytes."""
    prefix = storage.parse_uri(dest).as_prefix().key
    return {storage.parse_uri(o.uri).key[len(prefix):]: storage.read_bytes(o.uri) for o in storage.list_objects(dest)}
