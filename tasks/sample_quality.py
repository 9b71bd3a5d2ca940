"""Generated samples judged by a classifier: the confident share and each class's share.

A GAN that draws good samples of every class gives a classifier trained on the real data
confident answers spread over all classes; samples the classifier cannot place lower the
confident share, and a class the generator stopped drawing (mode collapse) shows as a
share near zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_CONFIDENT = 0.9
DEFAULT_MIN_CLASS_SHARE = 0.03


def top_classes(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(top class index int64, its probability float32) per row of a classifier's output.

    A binary model's single sigmoid column p (of class 1) counts as [1 - p, p], as in
    `tasks.image_classifier.top_k`; ties go to the lower class index.

    Raises:
        ValueError: not a 2-D matrix with at least one column.
    """
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] < 1:
        raise ValueError(f"probabilities must be a matrix (samples, classes), got shape {probs.shape}")
    if probs.shape[1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=1)
    classes = np.argmax(probs, axis=1)
    return classes.astype(np.int64), probs[np.arange(len(probs)), classes]


@dataclass
class QualityTally:
    """Counts that add up batch by batch: samples per top class, and confident samples."""

    classes: int
    confident: float = DEFAULT_CONFIDENT
    class_counts: np.ndarray = field(init=False)
    confident_count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.classes < 1:
            raise ValueError(f"a classifier has at least one class, got {self.classes}")
        if not 0 < self.confident <= 1:
            raise ValueError(f"the confidence threshold must be in (0, 1], got {self.confident}")
        self.class_counts = np.zeros(self.classes, dtype=np.int64)

    def add(self, classes: np.ndarray, confidences: np.ndarray) -> None:
        """Count samples by their top class index and its probability.

        Raises:
            ValueError: lengths differ, or a class index outside 0..classes-1.
        """
        classes, confidences = np.asarray(classes, dtype=np.int64), np.asarray(confidences)
        if classes.shape != confidences.shape or classes.ndim != 1:
            raise ValueError(f"one class and one confidence per sample, got {classes.shape} and {confidences.shape}")
        if len(classes) and (classes.min() < 0 or classes.max() >= self.classes):
            raise ValueError(f"class indices must be in 0..{self.classes - 1}, got {classes.min()}..{classes.max()}")
        self.class_counts += np.bincount(classes, minlength=self.classes)
        self.confident_count += int(np.count_nonzero(confidences >= np.float32(self.confident)))

    def figures(self, class_names: Sequence[str],
                min_class_share: float = DEFAULT_MIN_CLASS_SHARE) -> QualityFigures:
        """The figures of what was counted, classes named by `class_names` (in index order).

        Raises:
            ValueError: not one name per class, or no samples counted.
        """
        if len(class_names) != self.classes:
            raise ValueError(f"{self.classes} classes counted but {len(class_names)} class names given")
        samples = int(self.class_counts.sum())
        if not samples:
            raise ValueError("no samples counted")
        shares = self.class_counts / samples
        names = [str(name) for name in class_names]
        rare = [name for name, share in zip(names, shares) if share < min_class_share]
        return QualityFigures(
            samples=samples, confident_threshold=float(self.confident), confident_count=self.confident_count,
            confident_share=self.confident_count / samples,
            class_counts={name: int(n) for name, n in zip(names, self.class_counts)},
            class_shares={name: float(s) for name, s in zip(names, shares)},
            min_class_share=float(min_class_share), rare_classes=rare)


@dataclass(frozen=True)
class QualityFigures:
    """What a classifier says of `samples` generated images.

    `class_shares` names every class of the classifier, those no sample went to with 0.0;
    `rare_classes` are those below `min_class_share`: a possible mode collapse.
    """

    samples: int
    confident_threshold: float
    confident_count: int
    confident_share: float
    class_counts: dict[str, int]
    class_shares: dict[str, float]
    min_class_share: float
    rare_classes: list[str]

    @property
    def possible_mode_collapse(self) -> bool:
        return bool(self.rare_classes)

    def as_summary(self) -> dict:
        """The figures as the JSON a run's summary holds."""
        return {"samples": self.samples, "confident_threshold": self.confident_threshold,
                "confident_count": self.confident_count, "confident_share": self.confident_share,
                "class_counts": dict(self.class_counts),
                "class_shares": dict(self.class_shares),
                "min_class_share": self.min_class_share, "rare_classes": list(self.rare_classes),
                "possible_mode_collapse": self.possible_mode_collapse}


def describe_quality(summary: dict) -> list[str]:
    """The figures of `QualityFigures.as_summary` as lines for a person."""
    lines = [f"{summary['confident_share']:.1%} of {summary['samples']} samples classified with confidence >= "
             f"{summary['confident_threshold']:g}",
             "class shares: " + ", ".join(f"{name} {share:.1%}" for name, share in summary["class_shares"].items())]
    if summary["rare_classes"]:
        lines.append(f"possible mode collapse: {', '.join(summary['rare_classes'])} below "
                     f"{summary['min_class_share'] * 100:g}% of the samples")
    return lines


def quality_figures(probabilities: np.ndarray, class_names: Sequence[str], confident: float = DEFAULT_CONFIDENT,
                    min_class_share: float = DEFAULT_MIN_CLASS_SHARE) -> QualityFigures:
    """The figures of a classifier's output on generated samples (one row per sample).

    Raises:
        ValueError: not one class name per column (two for a binary model's one column); see
            `top_classes` and `QualityTally`.
    """
    classes, confidences = top_classes(probabilities)
    columns = np.shape(probabilities)[1]
    tally = QualityTally(2 if columns == 1 else columns, confident)
    tally.add(classes, confidences)
    return tally.figures(class_names, min_class_share)


# --- generated images as a classifier's input ----------------------------------------------------


def input_adaptation(image_shape: Sequence[int], input_shape: Sequence[int]) -> str | None:
    """How generated images of `image_shape` are fed to a classifier taking `input_shape`:
    None when they fit as they are, else what is done to them, said in words.

    Images are changed only the way a score job reading their PNGs would change them, and
    only where that cannot mislead: resized when the proportions are the same; grey
    replicated to RGB (what decoding a grayscale PNG for an RGB model gives).

    Raises:
        ValueError: colour images for a grayscale classifier (it could not judge colour),
            or other proportions (resizing would distort them).
    """
    height, width, channels = (int(v) for v in image_shape)
    in_height, in_width, in_channels = (int(v) for v in input_shape)
    if channels == 3 and in_channels == 1:
        raise ValueError(f"the classifier takes grayscale {in_height}x{in_width}x1 images but the generator "
                         f"draws colour {height}x{width}x3 ones: it could not tell wrong colours")
    if height * in_width != width * in_height:
        raise ValueError(f"the classifier takes {in_height}x{in_width} images but the generator draws "
                         f"{height}x{width} ones: resizing would distort them")
    steps = []
    if (height, width) != (in_height, in_width):
        steps.append(f"resized from {height}x{width} to {in_height}x{in_width}")
    if channels != in_channels:
        steps.append("grey replicated to RGB")
    return ", ".join(steps) or None


def fit_generated(images: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """Generated uint8 images (n, H, W, 1 or 3; RGB) as a classifier's input of `input_shape`,
    pixel for pixel what a score job decoding their PNGs would feed it.

    Raises:
        ValueError: see `input_adaptation`.
    """
    from tasks.image_classifier import fit_to_input

    images = np.asarray(images, dtype=np.uint8)
    if input_adaptation(images.shape[1:], input_shape) is None:
        return images
    if not len(images):
        return np.zeros((0, *(int(v) for v in input_shape)), dtype=np.uint8)
    # fit_to_input takes what OpenCV decodes: BGR (a grayscale PNG read for an RGB model too).
    to_opencv = _opencv_layout(images.shape[-1], int(input_shape[2]))
    return np.stack([fit_to_input(to_opencv(image), input_shape) for image in images])


def _opencv_layout(channels: int, input_channels: int):
    import cv2

    if channels == 1 and input_channels == 1:
        return lambda image: image[..., 0]
    if channels == 1:
        return lambda image: cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR)
    return lambda image: cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def classify_samples(classifier, images: np.ndarray, input_shape: Sequence[int],
                     batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(top class index, its probability) of each generated image under a tf-keras classifier
    (see `fit_generated`, `top_classes`)."""
    inputs = fit_generated(images, input_shape)
    outputs = [classifier(inputs[start:start + batch_size], training=False).numpy()
               for start in range(0, len(inputs), batch_size)]
    if not outputs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return top_classes(np.concatenate(outputs))
