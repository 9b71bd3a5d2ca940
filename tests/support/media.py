"""Test media made by code: a CIFAR-10 tarball in the official format, and good and bad images.

Nothing here is downloaded. Every maker is deterministic for its seed.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# The member order of the official cifar-10-python.tar.gz: batches.meta comes mid-stream.
CIFAR10_MEMBER_ORDER = ("data_batch_4", "readme.html", "test_batch", "data_batch_3", "batches.meta",
                        "data_batch_2", "data_batch_5", "data_batch_1")
CIFAR10_DIR = "cifar-10-batches-py"

# One base colour per class, so a class is visible in its pixels.
_CLASS_TINTS = np.array([
    [200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40], [200, 40, 200],
    [40, 200, 200], [120, 120, 120], [240, 140, 20], [20, 100, 160], [90, 30, 10],
], dtype=np.int16)


# --- CIFAR-10 -------------------------------------------------------------------------------


class _Python2Pickler(pickle._Pickler):
    """Pickles the way Python 2's cPickle did at protocol 2, as the official batches were.

    Byte strings become Python 2 `str` opcodes (not `_codecs.encode` calls), so keys load
    as bytes only with `encoding="bytes"`, and numpy's reconstructor is named
    `numpy.core.multiarray._reconstruct`, as numpy 1 named it.
    """

    dispatch = pickle._Pickler.dispatch.copy()
    _reconstruct = np.zeros(1).__reduce__()[0]

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None) -> None:
        if obj is self._reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def python2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def cifar10_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 32, 32, 3) uint8 images: the class tint, a random gradient, and noise."""
    count = len(labels)
    ramp = np.linspace(-1, 1, 32)
    gradient = rng.uniform(-30, 30, size=(count, 1, 1, 1)) * ramp[None, :, None, None]
    noise = rng.integers(-40, 41, size=(count, 32, 32, 3))
    pixels = _CLASS_TINTS[labels][:, None, None, :] + gradient + noise
    return np.clip(pixels, 0, 255).astype(np.uint8)


def cifar10_batches(per_batch: int = 20, test_count: int = 20, seed: int = 0) -> dict[str, dict]:
    """The seven CIFAR-10 python batches as dicts, keyed by member name (no directory).

    Keys, value types and layout are the official ones: `b"data"` is an (N, 3072) uint8
    array, each row 1024 red, 1024 green then 1024 blue values of a 32x32 image.
    """
    rng = np.random.default_rng(seed)
    batches: dict[str, dict] = {}
    serial = 0

    def batch(count: int, batch_label: str) -> dict:
        nonlocal serial
        labels = rng.integers(0, 10, size=count)
        images = cifar10_images(labels, rng)
        filenames = []
        for label in labels:
            serial += 1
            filenames.append(f"{CIFAR10_LABELS[label]}_s_{serial:06d}.png".encode())
        return {
            b"batch_label": batch_label.encode(),
            b"labels": [int(label) for label in labels],
            b"data": images.transpose(0, 3, 1, 2).reshape(count, 3 * 32 * 32).copy(),
            b"filenames": filenames,
        }

    for i in range(1, 6):
        batches[f"data_batch_{i}"] = batch(per_batch, f"training batch {i} of 5")
    batches["test_batch"] = batch(test_count, "testing batch 1 of 1")
    batches["batches.meta"] = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [name.encode() for name in CIFAR10_LABELS],
        b"num_vis": 3 * 32 * 32,
    }
    return batches


def pack_cifar10_tarball(path: Path, batches: dict[str, dict | bytes]) -> Path:
    """Write `batches` (dicts are pickled, bytes written as they are) as a .tar.gz.

    Members go under `cifar-10-batches-py/` in the official order; names not in that
    order follow it, and a readme.html is added as in the original.
    """
    members = {"readme.html": b"<html><body>CIFAR-10 (generated for tests)</body></html>\n", **batches}
    order = [name for name in CIFAR10_MEMBER_ORDER if name in members]
    order += [name for name in members if name not in order]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        directory = tarfile.TarInfo(CIFAR10_DIR)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name in order:
            content = members[name]
            data = content if isinstance(content, bytes) else python2_pickle(content)
            info = tarfile.TarInfo(f"{CIFAR10_DIR}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def write_cifar10_tarball(path: Path, per_batch: int = 20, test_count: int = 20, seed: int = 0) -> Path:
    """A small `cifar-10-python.tar.gz`: 5 data batches of `per_batch` images and a test batch."""
    return pack_cifar10_tarball(path, cifar10_batches(per_batch, test_count, seed))


def read_cifar10_tarball(path: Path) -> dict[str, dict]:
    """The batches of a tarball this module wrote, unpickled with plain `pickle` (trusted input)."""
    batches = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if member.isfile() and name != "readme.html":
                batches[name] = pickle.loads(tar.extractfile(member).read(), encoding="bytes")
    return batches


# --- images, good and bad ---------------------------------------------------------------------


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (40, 30), seed: int = 0, mode: str = "RGB") -> bytes:
    """A real, decodable image (`size` is width, height) of smooth colour with noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = rng.integers(0, 256, size=3)
    pixels = base + rng.integers(-30, 31, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def border_difference(image: np.ndarray, ring: int = 2) -> float:
    """The largest channel difference (0-255) between the mean of an image's outer `ring`
    pixels and the mean of the next 2 * `ring` pixels inward: a frame shows up here (a
    measurement of stylized results, kept beside the media they are made from)."""
    image = image.astype(np.float64)
    outer = np.ones(image.shape[:2], bool)
    outer[ring:-ring, ring:-ring] = False
    inner = np.zeros(image.shape[:2], bool)
    inner[ring:-ring, ring:-ring] = True
    inner[3 * ring:-3 * ring, 3 * ring:-3 * ring] = False
    return float(np.abs(image[outer].mean(axis=0) - image[inner].mean(axis=0)).max())


def corrupt_jpeg_bytes(seed: int = 0) -> bytes:
    """Starts like a real JPEG (magic, headers) but garbage replaces the image data.

    PIL, OpenCV (imdecode returns None) and tf.io.decode_image all fail on it.
    """
    good = image_bytes("JPEG", (64, 48), seed)
    start_of_scan = good.index(b"\xff\xda")
    garbage = np.random.default_rng(seed).integers(0, 256, size=500, dtype=np.uint8).tobytes()
    return good[:start_of_scan] + garbage


def truncated_jpeg_bytes(seed: int = 0) -> bytes:
    """The first half of a real JPEG, like an interrupted upload; PIL, OpenCV and TF fail on it."""
    good = image_bytes("JPEG", (64, 48), seed)
    return good[: len(good) // 2]


def text_as_jpg_bytes() -> bytes:
    """Plain text, for a file named .jpg that is not an image at all."""
    return b"This is a text file with a .jpg name, not an image.\n" * 4


def write_image_folder(root: Path, jpeg: int = 4, png: int = 2, seed: int = 0) -> list[Path]:
    """Real JPEG and PNG images of mixed sizes (one grayscale PNG, one RGBA PNG when png >= 2)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(jpeg):
        path = root / f"photo_{i:02d}.jpg"
        path.write_bytes(image_bytes("JPEG", (32 + 8 * i, 24 + 6 * i), seed + i))
        paths.append(path)
    for i in range(png):
        mode = ("L", "RGBA")[i] if i < 2 else "RGB"
        path = root / f"drawing_{i:02d}.png"
        path.write_bytes(image_bytes("PNG", (48 - 4 * i, 36 + 4 * i), seed + 100 + i, mode))
        paths.append(path)
    return paths


def write_scoring_folder(root: Path, good: int = 6, seed: int = 0) -> dict[str, list[Path]]:
    """A folder for scoring tests: `good` real images and one of each kind of bad file.

    Returns `{"good": [...], "bad": [...]}`; a hidden file is also written, and is in neither
    list, because listing leaves hidden files out.
    """
    good_paths = write_image_folder(root, jpeg=good - good // 3, png=good // 3, seed=seed)
    bad = {
        "corrupt.jpg": corrupt_jpeg_bytes(seed),
        "truncated.jpg": truncated_jpeg_bytes(seed),
        "not_an_image.jpg": text_as_jpg_bytes(),
        "empty.png": b"",
    }
    bad_paths = []
    for name, data in bad.items():
        (root / name).write_bytes(data)
        bad_paths.append(root / name)
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return {"good": good_paths, "bad": bad_paths}
