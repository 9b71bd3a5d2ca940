"""Fast tests of the GAN quality figures: a classifier's probabilities to shares (no Ray, no S3)."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.runs.generate import encode_png
from tasks.image_classifier import decode_image
from tasks.sample_quality import (QualityTally, classify_samples, describe_quality, fit_generated, input_adaptation,
                                  quality_figures, top_classes)

NAMES = ["zero", "one", "two"]


def _probabilities(rows: list[tuple[int, float]], classes: int = 3) -> np.ndarray:
    """One row per (top class, its probability); the rest of the mass spread over the others."""
    matrix = np.zeros((len(rows), classes), dtype=np.float32)
    for i, (top, p) in enumerate(rows):
        matrix[i] = (1 - p) / (classes - 1)
        matrix[i, top] = p
    return matrix


def test_figures_count_confident_samples_and_every_class_share():
    rows = [(0, 0.99)] * 6 + [(0, 0.5)] * 2 + [(1, 0.95)] * 2  # "two" never comes up
    figures = quality_figures(_probabilities(rows), NAMES)
    assert figures.samples == 10 and figures.confident_count == 8 and figures.confident_share == pytest.approx(0.8)
    assert figures.class_counts == {"zero": 8, "one": 2, "two": 0}
    assert figures.class_shares == {"zero": pytest.approx(0.8), "one": pytest.approx(0.2), "two": 0.0}
    assert sum(figures.class_shares.values()) == pytest.approx(1.0)
    assert figures.rare_classes == ["two"] and figures.possible_mode_collapse
    summary = figures.as_summary()
    assert list(summary["class_shares"]) == NAMES and summary["possible_mode_collapse"] is True
    assert describe_quality(summary) == [
        "80.0% of 10 samples classified with confidence >= 0.9",
        "class shares: zero 80.0%, one 20.0%, two 0.0%",
        "possible mode collapse: two below 3% of the samples"]


def test_threshold_and_minimum_share_are_inclusive_bounds():
    rows = [(0, 0.9)] * 97 + [(1, 0.899)] * 3  # exactly at the threshold counts; 3% is not below 3%
    figures = quality_figures(_probabilities(rows, 2), ["a", "b"], confident=0.9, min_class_share=0.03)
    assert figures.confident_count == 97 and figures.rare_classes == [] and not figures.possible_mode_collapse
    stricter = quality_figures(_probabilities(rows, 2), ["a", "b"], confident=0.95, min_class_share=0.031)
    assert stricter.confident_count == 0 and stricter.rare_classes == ["b"]
    assert len(describe_quality(figures.as_summary())) == 2  # no mode-collapse line


def test_a_binary_models_sigmoid_column_is_two_classes():
    classes, confidences = top_classes(np.array([[0.97], [0.2], [0.5]], dtype=np.float32))
    assert classes.tolist() == [1, 0, 0]  # a tie goes to the first class
    assert confidences == pytest.approx([0.97, 0.8, 0.5])
    figures = quality_figures(np.array([[0.97], [0.2]]), ["cat", "dog"])
    assert figures.class_counts == {"cat": 1, "dog": 1} and figures.confident_count == 1


def test_a_tally_over_batches_equals_the_figures_of_all_rows():
    rng = np.random.default_rng(4)
    probabilities = rng.dirichlet([0.3] * 3, size=500).astype(np.float32)
    whole = quality_figures(probabilities, NAMES, confident=0.8)
    tally = QualityTally(3, 0.8)
    for start in range(0, 500, 64):
        tally.add(*top_classes(probabilities[start:start + 64]))
    tally.add(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))  # an empty batch
    assert tally.figures(NAMES) == whole
    assert sum(whole.class_counts.values()) == 500
    assert whole.confident_count == int((probabilities.max(axis=1) >= np.float32(0.8)).sum())


def test_figures_refuse_what_does_not_add_up():
    with pytest.raises(ValueError, match="3 classes counted but 2 class names given"):
        quality_figures(_probabilities([(0, 0.9)]), ["a", "b"])
    with pytest.raises(ValueError, match="no samples counted"):
        QualityTally(3).figures(NAMES)
    with pytest.raises(ValueError, match=r"class indices must be in 0..2, got 0..3"):
        QualityTally(3).add(np.array([0, 3]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="one class and one confidence per sample"):
        QualityTally(3).add(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\], got 0"):
        QualityTally(3, confident=0)
    with pytest.raises(ValueError, match=r"must be a matrix \(samples, classes\), got shape \(3,\)"):
        top_classes(np.array([0.1, 0.2, 0.7]))


@pytest.mark.parametrize("image_shape, input_shape, expected", [
    ((28, 28, 1), (28, 28, 1), None),
    ((28, 28, 3), (28, 28, 3), None),
    ((28, 28, 1), (32, 32, 3), "resized from 28x28 to 32x32, grey replicated to RGB"),
    ((28, 28, 1), (28, 28, 3), "grey replicated to RGB"),
    ((32, 16, 3), (64, 32, 3), "resized from 32x16 to 64x32"),
])
def test_generated_images_are_fitted_only_where_that_cannot_mislead(image_shape, input_shape, expected):
    assert input_adaptation(image_shape, input_shape) == expected


@pytest.mark.parametrize("image_shape, input_shape, message", [
    ((32, 32, 3), (32, 32, 1), "grayscale 32x32x1 images but the generator draws colour 32x32x3 ones"),
    ((28, 28, 1), (32, 16, 1), "takes 32x16 images but the generator draws 28x28 ones: resizing would distort"),
])
def test_classifiers_that_cannot_judge_the_images_are_refused(image_shape, input_shape, message):
    with pytest.raises(ValueError, match=message):
        input_adaptation(image_shape, input_shape)


@pytest.mark.parametrize("image_shape, input_shape", [
    ((28, 28, 1), (32, 32, 3)), ((28, 28, 1), (28, 28, 3)), ((28, 28, 1), (56, 56, 1)),
    ((16, 16, 3), (32, 32, 3)), ((32, 32, 3), (16, 16, 3)), ((28, 28, 1), (28, 28, 1)),
])
def test_fitted_images_are_what_a_score_job_decodes_from_their_pngs(image_shape, input_shape):
    images = np.random.default_rng(1).integers(0, 256, (3, *image_shape), dtype=np.uint8)
    fitted = fit_generated(images, input_shape)
    decoded = np.stack([decode_image(encode_png(image), input_shape) for image in images])
    assert fitted.shape == (3, *input_shape) and fitted.dtype == np.uint8
    assert np.array_equal(fitted, decoded)


def test_classify_samples_feeds_fitted_images_in_batches():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Input((32, 32, 3)), tf.keras.layers.Rescaling(1 / 255),
                                 tf.keras.layers.Flatten(), tf.keras.layers.Dense(4, activation="softmax")])
    images = np.random.default_rng(2).integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    classes, confidences = classify_samples(model, images, (32, 32, 3), batch_size=3)
    expected = model(fit_generated(images, (32, 32, 3)), training=False).numpy()
    assert classes.tolist() == np.argmax(expected, axis=1).tolist()
    assert confidences == pytest.approx(expected.max(axis=1), abs=1e-6)
    empty = classify_samples(model, images[:0], (32, 32, 3))
    assert empty[0].shape == empty[1].shape == (0,)
