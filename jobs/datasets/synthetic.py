"""Generated datasets: images of simple shapes (real JPEG/PNG files a tiny CNN can learn),
and spoken words by espeak-ng.

Used by `mediajobs demo`, `mediajobs bench` and the tests, so that training and scoring can
run with no download. Every file is deterministic for a seed (or for its voice and speed).
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPES", "write_shapes_dataset", "write_binary_dataset", "write_spoken_words"]

SHAPES = ("circle", "square", "triangle", "cross")
SPLITS = ("train", "test")

# Share of images in each variant; the rest are RGB. RGBA is always written as PNG.
_GRAYSCALE_SHARE = 0.1
_RGBA_SHARE = 0.1
_PNG_SHARE = 0.4


def write_shapes_dataset(
    root: Path,
    classes: Sequence[str] = ("circle", "square", "triangle"),
    per_class_train: int = 200,
    per_class_test: int = 50,
    seed: int = 0,
) -> dict[str, dict[str, int]]:
    """Write `root/{train,test}/<class>/<class>_NNNN.{jpg,png}`, one shape per image.

    The files vary the way real uploads do: JPEG and PNG, sizes from 24 to 96 pixels
    (not always square), a few grayscale and RGBA files, random background colours with
    a gradient and noise, and one shape of random colour, position, size and a small
    rotation. The shape is large and clearly lighter than its background, so the class
    survives a resize to 32x32 and the tiny demo CNN learns it in a few epochs (see
    `_draw_mask` for what was tuned, and why).

    Args:
        root: the directory to write into (created if missing).
        classes: shape names, a subset of `SHAPES`; each becomes one class folder.
        per_class_train: images per class in `train/`.
        per_class_test: images per class in `test/`.
        seed: the same seed writes byte-identical files.

    Returns:
        The number of images written, as `{split: {class: count}}`.

    Raises:
        ValueError: for an unknown shape name, a repeated one, or a negative count.
    """
    return _write_dataset(Path(root), classes, {"train": per_class_train, "test": per_class_test}, seed,
                          fixed_size=None)


def write_binary_dataset(
    root: Path,
    classes: Sequence[str] = ("circle", "square"),
    per_class_train: int = 200,
    per_class_test: int = 50,
    seed: int = 0,
    size: int = 64,
) -> dict[str, dict[str, int]]:
    """Write a two-class shapes dataset of `size`x`size` RGB images (JPEG and PNG).

    The layout and return value are those of `write_shapes_dataset`; every image has the
    same size and three channels, as the binary-cnn variant expects.

    Raises:
        ValueError: unless exactly two known, distinct shapes are given, or for a bad size.
    """
    if len(classes) != 2:
        raise ValueError(f"a binary dataset needs exactly 2 classes, got {list(classes)}")
    if size < 16:
        raise ValueError(f"image size must be at least 16 pixels, got {size}")
    return _write_dataset(Path(root), classes, {"train": per_class_train, "test": per_class_test}, seed,
                          fixed_size=size)


def write_spoken_words(root: Path, words: Sequence[str], voices: Sequence[str], speeds: Sequence[int]) -> int:
    """Every word in every espeak-ng English voice variant (`m1`..`m7`, `f1`..`f5`, ...) at
    every speed (words per minute): `root/<word>/<word>_<voice>_<speed>.wav` (22.05 kHz,
    16-bit). A grid rather than random draws, so a split by voice or by speed holds exactly
    the voices or speeds it names. Needs the `espeak-ng` program (Debian package espeak-ng).

    Returns:
        The number of files written.
    """
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install -y espeak-ng)")
    for word in words:
        folder = root / word
        folder.mkdir(parents=True, exist_ok=True)
        for voice in voices:
            for speed in speeds:
                subprocess.run(["espeak-ng", "-v", f"en+{voice}", "-s", str(speed), "-w",
                                str(folder / f"{word}_{voice}_{speed}.wav"), word],
                               check=True, capture_output=True, timeout=30)
    return len(words) * len(voices) * len(speeds)


def _write_dataset(root: Path, classes: Sequence[str], counts: dict[str, int], seed: int,
                   fixed_size: int | None) -> dict[str, dict[str, int]]:
    classes = list(classes)
    unknown = [c for c in classes if c not in SHAPES]
    if unknown:
        raise ValueError(f"unknown shape(s) {unknown}; valid shapes: {', '.join(SHAPES)}")
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be distinct and non-empty, got {classes}")
    for split, n in counts.items():
        if n < 0:
            raise ValueError(f"per_class_{split} must be >= 0, got {n}")

    written: dict[str, dict[str, int]] = {}
    for split_index, split in enumerate(SPLITS):
        written[split] = {}
        for shape in classes:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            # One stream per (split, shape): changing one count leaves the other files unchanged.
            rng = np.random.default_rng([seed, split_index, SHAPES.index(shape)])
            for i in range(counts[split]):
                image = _draw_shape_image(rng, shape, fixed_size)
                as_png = image.mode == "RGBA" or rng.random() < _PNG_SHARE
                suffix = "png" if as_png else "jpg"
                (folder / f"{shape}_{i:04d}.{suffix}").write_bytes(_encode(image, as_png, rng))
            written[split][shape] = counts[split]
    return written


def _draw_shape_image(rng: np.random.Generator, shape: str, fixed_size: int | None) -> Image.Image:
    if fixed_size is None:
        height = int(rng.integers(24, 97))
        # Readers resize to a square; wider aspect ratios (2:3..3:2) stretched circles into
        # ellipses enough to cost the demo CNN 5-10 points of test accuracy.
        width = int(np.clip(round(height * rng.uniform(0.8, 1.25)), 24, 96))
        variant = rng.random()
        mode = "L" if variant < _GRAYSCALE_SHARE else "RGBA" if variant < _GRAYSCALE_SHARE + _RGBA_SHARE else "RGB"
    else:
        height = width = fixed_size
        mode = "RGB"

    background, foreground = _contrasting_colours(rng)
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[:] = background
    # A gentle linear gradient, so the background is not a flat colour.
    gradient = rng.uniform(-25, 25, size=3) * np.linspace(-1, 1, width, dtype=np.float32)[None, :, None]
    pixels += gradient

    mask = Image.new("L", (width, height), 0)
    _draw_mask(ImageDraw.Draw(mask), rng, shape, width, height)
    inside = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    pixels = pixels * (1 - inside) + np.asarray(foreground, dtype=np.float32) * inside
    pixels += rng.normal(0, rng.uniform(0, 12), size=pixels.shape)
    rgb = np.clip(pixels, 0, 255).astype(np.uint8)

    image = Image.fromarray(rgb, "RGB")
    if mode == "L":
        return image.convert("L")
    if mode == "RGBA":
        # The colour channels stay meaningful under the alpha, as readers often drop it.
        alpha = np.where(np.asarray(mask) > 0, 255, int(rng.integers(160, 256))).astype(np.uint8)
        image.putalpha(Image.fromarray(alpha, "L"))
    return image


def _contrasting_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A background and a lighter shape colour: luminance at least 100 of 255 higher.

    One polarity (light on dark) rather than either: with both, four epochs of the demo
    CNN on 150 images a class reached 0.82-0.88 test accuracy instead of 0.93-0.95.
    """
    weights = np.array([0.299, 0.587, 0.114])
    while True:
        background = rng.integers(0, 256, size=3).astype(np.float32)
        foreground = rng.integers(0, 256, size=3).astype(np.float32)
        if float(weights @ foreground) - float(weights @ background) >= 100:
            return background, foreground


def _draw_mask(draw: ImageDraw.ImageDraw, rng: np.random.Generator, shape: str, width: int, height: int) -> None:
    # What the demo CNN (4 epochs, a few hundred images a class) can learn was tuned here:
    # large shapes, squares near axis-aligned and triangles pointing up. Free rotations
    # and smaller shapes left it near 0.7 test accuracy; it needed 12 epochs for 0.9.
    short = min(width, height)
    # Radius of the shape's circumscribed circle.
    radius = short * rng.uniform(0.40, 0.48)
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius, height - radius)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
    elif shape == "square":
        half = radius / math.sqrt(2)
        angle = math.radians(rng.uniform(-10, 10))
        draw.polygon(_rotated([(-half, -half), (half, -half), (half, half), (-half, half)], angle, cx, cy), fill=255)
    elif shape == "triangle":
        angle = -math.pi / 2 + math.radians(rng.uniform(-15, 15))  # apex up
        corners = [(radius * math.cos(angle + k * 2 * math.pi / 3), radius * math.sin(angle + k * 2 * math.pi / 3))
                   for k in range(3)]
        draw.polygon([(cx + x, cy + y) for x, y in corners], fill=255)
    else:  # cross
        arm = radius * rng.uniform(0.28, 0.4)
        angle = math.radians(rng.uniform(-20, 20))
        for bar in ([(-radius, -arm), (radius, -arm), (radius, arm), (-radius, arm)],
                    [(-arm, -radius), (arm, -radius), (arm, radius), (-arm, radius)]):
            draw.polygon(_rotated(bar, angle, cx, cy), fill=255)


def _rotated(points: list[tuple[float, float]], angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]


def _encode(image: Image.Image, as_png: bool, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    if as_png:
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=int(rng.integers(75, 96)))
    return buffer.getvalue()
