"""Real handwritten digits as 28x28 grayscale PNGs, for training the DCGAN.

Two sources:

- "sklearn": the UCI handwritten digits that scikit-learn ships inside its package
  (1,797 images of 8x8 pixels, 16 grey levels, written by 43 people): no download, so it
  works on machines without internet. Each image is upscaled to 20x20 (bicubic) and
  centred in a 28x28 frame, the way MNIST centres its 20x20 digits.
- "mnist": MNIST itself (70,000 images): Keras's `mnist.npz`, downloaded (internet
  needed) and checked against its SHA-256 by `tf.keras.utils.get_file`, then read with
  `allow_pickle=False` (Keras's own `load_data` allows pickles in that file).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from jobs.errors import IngestError

SOURCES = ("sklearn", "mnist")
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"  # Keras's own pin
SIZE, DIGIT_SIZE = 28, 20


def upscale_digit(pixels: np.ndarray, max_value: float) -> np.ndarray:
    """An 8x8 digit (0..max_value, ink bright) as a uint8 28x28 image, the digit in the 20x20 centre."""
    import cv2

    scaled = np.asarray(pixels, dtype=np.float32) * (255.0 / max_value)
    digit = np.clip(cv2.resize(scaled, (DIGIT_SIZE, DIGIT_SIZE), interpolation=cv2.INTER_CUBIC), 0, 255)
    image = np.zeros((SIZE, SIZE), dtype=np.uint8)
    offset = (SIZE - DIGIT_SIZE) // 2
    image[offset:offset + DIGIT_SIZE, offset:offset + DIGIT_SIZE] = np.rint(digit).astype(np.uint8)
    return image


def digit_images(source: str, limit: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(relative key `<digit>/<source>-<index>.png`, uint8 28x28 image) pairs.

    Raises:
        IngestError: an unknown source, or MNIST cannot be downloaded.
    """
    if source == "sklearn":
        from sklearn.datasets import load_digits

        data = load_digits()
        images: Iterator[np.ndarray] = (upscale_digit(pixels, 16.0) for pixels in data.images)
        labels = data.target
    elif source == "mnist":
        try:
            import tensorflow as tf

            path = tf.keras.utils.get_file("mnist.npz", MNIST_URL, file_hash=MNIST_SHA256)
        except Exception as exc:  # Keras raises bare Exceptions for network failures
            raise IngestError(f"cannot download MNIST ({type(exc).__name__}: {exc}); without internet use "
                              "--source sklearn (the handwritten digits bundled with scikit-learn)") from None
        images, labels = read_mnist_npz(path)
    else:
        raise IngestError(f"unknown digits source {source!r}; valid: {', '.join(SOURCES)}")
    for index, (image, label) in enumerate(zip(images, labels)):
        if limit is not None and index >= limit:
            return
        yield f"{int(label)}/{source}-{index:05d}.png", image


def read_mnist_npz(path) -> tuple[Iterator[np.ndarray], np.ndarray]:
    """The 70,000 images (train, then test) and labels of Keras's `mnist.npz`.

    Raises:
        IngestError: the file is not that archive (missing arrays, or pickled objects,
            which are never loaded).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            images = np.concatenate([archive["x_train"], archive["x_test"]])
            labels = np.concatenate([archive["y_train"], archive["y_test"]])
    except (KeyError, ValueError, OSError) as exc:
        raise IngestError(f"{path} is not Keras's mnist.npz ({type(exc).__name__}: {exc})") from None
    return iter(images), labels
