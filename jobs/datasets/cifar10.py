"""Reading CIFAR-10: the official python tarball, streamed, its pickles restricted.

The batches are pickles. They are loaded only from the tarball the user names, or from
the official one downloaded and checked against its published MD5, and always through
an unpickler that accepts only the numpy globals a CIFAR-10 batch needs. (Keras's own
`cifar10.load_data()` unpickles without restriction, so it is not used.)
"""

from __future__ import annotations

import io
import pickle
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.errors import IngestError

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published beside the download
_CIFAR_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


@dataclass(frozen=True)
class _CifarSplit:
    images: np.ndarray  # (N, 32, 32, 3) uint8 RGB
    labels: np.ndarray  # (N,) int
    filenames: list[str]


def image_keys(split_name: str, split: _CifarSplit, label_names: list[str]) -> list[str]:
    """`<split>/<label>/<filename>` per image; a repeated name gets its index appended."""
    keys, seen = [], set()
    for index, (label, filename) in enumerate(zip(split.labels, split.filenames)):
        key = f"{split_name}/{label_names[label]}/{filename}"
        if key in seen:
            stem, ext = posixpath.splitext(filename)
            key = f"{split_name}/{label_names[label]}/{stem}_{index}{ext}"
        seen.add(key)
        keys.append(key)
    return keys


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")  # (H, W, 3) RGB or (H, W) grey
    return buffer.getvalue()


def download_cifar10() -> tuple[list[str], dict[str, _CifarSplit]]:
    """The official tarball, downloaded once (checked against its published MD5) and read
    with the same restricted unpickler as a tarball the user names."""
    try:
        tarball = _fetch_tarball()
    except Exception as exc:  # keras reports download failures as a bare Exception
        raise IngestError(
            f"could not download CIFAR-10 ({type(exc).__name__}: {exc}); this needs internet "
            f"access. Download {CIFAR10_URL} yourself and pass it with --source PATH") from exc
    return read_cifar10_tarball(tarball)


def _fetch_tarball() -> Path:
    """`cifar-10-python.tar.gz` in Keras's dataset cache (`~/.keras/datasets/`), downloaded if missing."""
    import tensorflow as tf

    return Path(tf.keras.utils.get_file("cifar-10-python.tar.gz", CIFAR10_URL, file_hash=CIFAR10_MD5,
                                        hash_algorithm="md5"))


class _CifarUnpickler(pickle.Unpickler):
    """Loads CIFAR-10 batches and refuses every global a batch does not need.

    The batches were pickled by Python 2: their keys and file names are byte strings
    (hence `encoding="bytes"`), and the data arrays name `numpy.core.multiarray`.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes byte strings at protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _load_batch(path: Path, member: str, raw: bytes) -> dict:
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise IngestError(f"{path}: member {member} is not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(batch, dict):
        raise IngestError(f"{path}: member {member} holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    return batch


def read_cifar10_tarball(path: Path) -> tuple[list[str], dict[str, _CifarSplit]]:
    """Label names and the train/test splits, read in one streaming pass over the tarball."""
    hint = f"pass the cifar-10-python.tar.gz downloaded from {CIFAR10_URL}"
    if not path.exists():
        raise IngestError(f"{path} does not exist; {hint}")
    if path.is_dir():
        raise IngestError(f"{path} is a folder; {hint}")
    batches: dict[str, dict] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                name = posixpath.basename(member.name)
                if member.isfile() and name in _CIFAR_MEMBERS and name not in batches:
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular file has contents to extract
                    batches[name] = _load_batch(path, member.name, handle.read())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise IngestError(f"{path} is not a readable tar.gz archive ({exc}); {hint}") from None
    missing = [name for name in _CIFAR_MEMBERS if name not in batches]
    if missing:
        raise IngestError(f"{path} lacks the CIFAR-10 member(s) {', '.join(missing)} "
                          f"(expected cifar-10-batches-py/...); {hint}")

    label_names = [_text(path, "batches.meta", name) for name in batches["batches.meta"].get(b"label_names", [])]
    if not label_names or any(not _is_safe_name(name) for name in label_names):
        raise IngestError(f"{path}: batches.meta has no usable b'label_names' ({label_names!r})")
    train = [_split_from_batch(path, f"data_batch_{i}", batches[f"data_batch_{i}"], len(label_names))
             for i in range(1, 6)]
    splits = {
        "train": _CifarSplit(np.concatenate([s.images for s in train]), np.concatenate([s.labels for s in train]),
                             [name for s in train for name in s.filenames]),
        "test": _split_from_batch(path, "test_batch", batches["test_batch"], len(label_names)),
    }
    return label_names, splits


def _split_from_batch(path: Path, member: str, batch: dict, label_count: int) -> _CifarSplit:
    missing = [key for key in (b"data", b"labels", b"filenames") if key not in batch]
    if missing:
        raise IngestError(f"{path}: {member} lacks the key(s) {missing}; found {sorted(batch)}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    filenames = [_text(path, member, name) for name in batch[b"filenames"]]
    count = len(labels)
    if data.dtype != np.uint8 or data.shape != (count, 3 * 32 * 32):
        raise IngestError(f"{path}: {member} data is {data.dtype} {data.shape}, expected uint8 ({count}, 3072)")
    if len(filenames) != count:
        raise IngestError(f"{path}: {member} has {count} labels but {len(filenames)} file names")
    if count and (labels.min() < 0 or labels.max() >= label_count):
        raise IngestError(f"{path}: {member} has labels outside 0..{label_count - 1}")
    unsafe = [name for name in filenames if not _is_safe_name(name)]
    if unsafe:
        raise IngestError(f"{path}: {member} has unusable file names, e.g. {unsafe[0]!r}")
    # Rows are channel-planar: 1024 red, then 1024 green, then 1024 blue values.
    images = data.reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return _CifarSplit(images, labels.astype(int), filenames)


def _text(path: Path, member: str, value: object) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise IngestError(f"{path}: {member} has a name that is not UTF-8: {value!r}") from None
    if isinstance(value, str):
        return value
    raise IngestError(f"{path}: {member} has a name of type {type(value).__name__}: {value!r}")


def _is_safe_name(name: str) -> bool:
    """A single path component that storage will list back (no separators, not hidden)."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")
