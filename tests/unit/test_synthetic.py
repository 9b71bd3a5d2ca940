"""The generated shapes datasets: real image files, varied, deterministic. No training here
(learnability was checked with the demo CNN when the generator was tuned)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs.datasets.synthetic import write_binary_dataset, write_shapes_dataset


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("shapes")
    return root, write_shapes_dataset(root, per_class_train=40, per_class_test=12, seed=3)


def test_layout_and_counts(shapes):
    root, counts = shapes
    assert counts == {"train": {"circle": 40, "square": 40, "triangle": 40},
                      "test": {"circle": 12, "square": 12, "triangle": 12}}
    for split, per_class in counts.items():
        for shape, n in per_class.items():
            names = sorted(p.name for p in (root / split / shape).iterdir())
            assert len(names) == n
            assert all(name.startswith(f"{shape}_") for name in names)
    assert len(_files(root)) == 3 * (40 + 12)


def test_files_are_real_jpeg_and_png_of_mixed_sizes_and_modes(shapes):
    root, _ = shapes
    formats, modes, sizes = {}, set(), set()
    for path in _files(root):
        with Image.open(path) as image:
            image.load()  # decodes the whole file, not just the header
            expected = {".jpg": "JPEG", ".png": "PNG"}[path.suffix]
            assert image.format == expected, path
            formats[image.format] = formats.get(image.format, 0) + 1
            modes.add(image.mode)
            sizes.add(image.size)
            assert 24 <= min(image.size) and max(image.size) <= 96
    assert formats["JPEG"] > 20 and formats["PNG"] > 20, formats
    assert {"RGB", "L", "RGBA"} <= modes
    assert len(sizes) > 30
    assert any(w != h for w, h in sizes)


def test_shape_is_lighter_than_background(shapes):
    # The contrast the generator promises: the centre region (mostly shape) is brighter
    # than the border (mostly background) in nearly every image.
    root, _ = shapes
    brighter = []
    for path in _files(root / "train" / "circle"):
        with Image.open(path) as image:
            gray = np.asarray(image.convert("L"), dtype=float)
        h, w = gray.shape
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        brighter.append(gray[h // 2 - 2:h // 2 + 2, w // 2 - 2:w // 2 + 2].mean() > border.mean() + 40)
    assert np.mean(brighter) > 0.9


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first = write_shapes_dataset(tmp_path / "a", per_class_train=5, per_class_test=2, seed=7)
    second = write_shapes_dataset(tmp_path / "b", per_class_train=5, per_class_test=2, seed=7)
    third = write_shapes_dataset(tmp_path / "c", per_class_train=5, per_class_test=2, seed=8)
    assert first == second == third

    def contents(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in _files(root)}

    assert contents(tmp_path / "a") == contents(tmp_path / "b")
    assert contents(tmp_path / "a") != contents(tmp_path / "c")


def test_custom_classes_and_unknown_shape(tmp_path):
    counts = write_shapes_dataset(tmp_path, classes=("cross", "circle"), per_class_train=3, per_class_test=1)
    assert counts == {"train": {"cross": 3, "circle": 3}, "test": {"cross": 1, "circle": 1}}
    with pytest.raises(ValueError, match=r"unknown shape\(s\) \['hexagon'\]; valid shapes: circle, square"):
        write_shapes_dataset(tmp_path, classes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="distinct"):
        write_shapes_dataset(tmp_path, classes=("circle", "circle"))


def test_binary_dataset_is_two_classes_of_64px_rgb(tmp_path):
    counts = write_binary_dataset(tmp_path, per_class_train=10, per_class_test=4, seed=1)
    assert counts == {"train": {"circle": 10, "square": 10}, "test": {"circle": 4, "square": 4}}
    suffixes = set()
    for path in _files(tmp_path):
        suffixes.add(path.suffix)
        with Image.open(path) as image:
            image.load()
            assert image.size == (64, 64) and image.mode == "RGB", path
    assert suffixes == {".jpg", ".png"}
    with pytest.raises(ValueError, match="exactly 2 classes"):
        write_binary_dataset(tmp_path, classes=("circle", "square", "triangle"))
