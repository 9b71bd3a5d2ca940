"""The seeds' DCGAN (TensorFlow DCGAN tutorial): model, training step, saving, sampling.

Training feeds uint8-range images exactly as `decode_image` returns them; the model
rescales them to the generator's tanh range [-1, 1] itself. Sampling is deterministic
per `(seed, index)`, so generation can be partitioned across workers at will. The gan
task (`tasks.gan`) decodes its images and builds this model; its training plan
(`tasks.gan_training`) checkpoints and samples it.
"""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from tasks.keras_files import load_keras, save_keras

DEFAULT_IMAGE_SHAPE = (28, 28, 1)
DEFAULT_LATENT_DIM = 100
DEFAULT_LEARNING_RATE = 1e-4
ADAM_BETA_1 = 0.5  # the DCGAN paper's value; 0.9 makes GAN training oscillate more
GENERATOR_FILE = "generator.keras"
DISCRIMINATOR_FILE = "discriminator.keras"
OPTIMIZER_CHECKPOINT = "optimizers"
# Sampling runs the generator on batches of exactly this many rows, image `index` always
# in row `index % GENERATE_BATCH`: the kernels then see the same shape and the same row
# for an image however a run is partitioned, so its bytes cannot depend on the split.
GENERATE_BATCH = 64
GRID_PADDING = 2
GRID_BACKGROUND = 32


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """`image_shape` as a tuple of ints, or a ValueError saying what a DCGAN needs."""
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shape):
        raise ValueError(f"image_shape must be (height, width, channels), got {image_shape!r}")
    height, width, channels = (int(v) for v in shape)
    if height < 4 or width < 4 or height % 4 or width % 4:
        raise ValueError(f"image_shape height and width must be multiples of 4 (the generator "
                         f"upsamples twice by 2), got {height}x{width}")
    if channels not in (1, 3):
        raise ValueError(f"image_shape channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    return height, width, channels


def build_generator(image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE, latent_dim: int = DEFAULT_LATENT_DIM):
    """Latent vector (latent_dim,) to an image (H, W, C) in [-1, 1], from (H/4, W/4, 256)."""
    import tensorflow as tf

    height, width, channels = check_image_shape(image_shape)
    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Input(shape=(latent_dim,)),
            layers.Dense((height // 4) * (width // 4) * 256, use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Reshape((height // 4, width // 4, 256)),
            layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Conv2DTranspose(channels, (5, 5), strides=(2, 2), padding="same", use_bias=False,
                                   activation="tanh"),
        ],
        name="generator",
    )


def build_discriminator(image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE):
    """Image (H, W, C) in [-1, 1] to one logit: > 0 means "real"."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            layers.Input(shape=check_image_shape(image_shape)),
            layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"),
            layers.LeakyReLU(),
            layers.Dropout(0.3),
            layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"),
            layers.LeakyReLU(),
            layers.Dropout(0.3),
            layers.Flatten(),
            layers.Dense(1),
        ],
        name="discriminator",
    )


def _adam(learning_rate: float):
    import tensorflow as tf

    return tf.keras.optimizers.Adam(learning_rate=learning_rate, beta_1=ADAM_BETA_1)


_DCGAN = None


def _dcgan_class():
    # Defined on first use: its base class is tf.keras.Model, and importing this module
    # (e.g. to read a task's suffixes on the driver) must not import TensorFlow.
    global _DCGAN
    if _DCGAN is None:
        _DCGAN = _define_dcgan()
    return _DCGAN


def __getattr__(name: str):
    """`tasks.dcgan.DCGAN`, the tf.keras.Model subclass, created when first asked for."""
    if name == "DCGAN":
        return _dcgan_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define_dcgan():
    # tasks.dcgan_keras imports TensorFlow at its top: imported here, on first use, never at
    # this module's import.
    from tasks.dcgan_keras import DCGAN

    return DCGAN


def build_dcgan(image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE, latent_dim: int = DEFAULT_LATENT_DIM,
                learning_rate: float = DEFAULT_LEARNING_RATE):
    """A compiled DCGAN: two Adam optimizers at `learning_rate`.

    Call it inside `strategy.scope()` for distributed training.
    """
    model = _dcgan_class()(build_generator(image_shape, latent_dim), build_discriminator(image_shape), name="dcgan")
    model.compile(g_optimizer=_adam(learning_rate), d_optimizer=_adam(learning_rate))
    return model


# --- saving ------------------------------------------------------------------------------------


def save_gan(dcgan, directory: str) -> None:
    """Saves both networks (`generator.keras`, `discriminator.keras`) and both optimizers'
    state (a TF checkpoint under `optimizers/`) into `directory`.

    The DCGAN itself cannot be saved as one `.keras` file (a subclassed model without
    `get_config`); its two Sequentials can. Under MultiWorkerMirroredStrategy call this on
    EVERY worker (non-chief workers into a throwaway directory), as with `model.save`.
    """
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    save_keras(dcgan.generator, os.path.join(directory, GENERATOR_FILE))
    save_keras(dcgan.discriminator, os.path.join(directory, DISCRIMINATOR_FILE))
    tf.train.Checkpoint(g_optimizer=dcgan.g_optimizer, d_optimizer=dcgan.d_optimizer).write(
        os.path.join(directory, OPTIMIZER_CHECKPOINT, "state"))


def load_gan(directory: str, learning_rate: float = DEFAULT_LEARNING_RATE):
    """The compiled DCGAN that `save_gan` wrote into `directory`, ready to resume training.

    Optimizer state (Adam moments, step count) is restored when `optimizers/` is there;
    without it training resumes with fresh optimizers. The learning rate is
    `learning_rate` either way. Call it inside `strategy.scope()` to resume distributed.

    Raises:
        FileNotFoundError: `directory` lacks `generator.keras` or `discriminator.keras`.
    """
    import tensorflow as tf

    generator = load_keras(_existing(directory, GENERATOR_FILE))
    discriminator = load_keras(_existing(directory, DISCRIMINATOR_FILE))
    model = _dcgan_class()(generator, discriminator, name="dcgan")
    model.compile(g_optimizer=_adam(learning_rate), d_optimizer=_adam(learning_rate))
    checkpoint = os.path.join(directory, OPTIMIZER_CHECKPOINT, "state")
    if os.path.exists(checkpoint + ".index"):
        # Build the slots first: the checkpoint then restores into them at once, in the
        # order of the trainable variables (the same networks give the same order).
        model.g_optimizer.build(generator.trainable_variables)
        model.d_optimizer.build(discriminator.trainable_variables)
        tf.train.Checkpoint(g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer).read(
            checkpoint).assert_existing_objects_matched()
        model.g_optimizer.learning_rate = learning_rate
        model.d_optimizer.learning_rate = learning_rate
    return model


def export_generator(dcgan, directory: str) -> str:
    """Writes the generator alone to `directory/generator.keras` (what sampling loads);
    returns that path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, GENERATOR_FILE)
    save_keras(dcgan.generator, path)
    return path


def load_generator(path: str, trust_code: bool = False):
    """The generator saved at `path`: a `.keras` file or a directory holding `generator.keras`
    (checked for code unless `trust_code`; see `load_keras`).

    Raises:
        FileNotFoundError: no generator there.
    """
    if os.path.isdir(path):
        path = _existing(path, GENERATOR_FILE)
    elif not os.path.exists(path):
        raise FileNotFoundError(f"no generator at {path}")
    return load_keras(path, trust_code=trust_code)


def _existing(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory} has no {name}; was it written by save_gan?")
    return path


# --- sampling ----------------------------------------------------------------------------------


def latent_vector(seed: int, index: int, latent_dim: int = DEFAULT_LATENT_DIM) -> np.ndarray:
    """The latent vector of image `index` of `seed`: float32 (latent_dim,), standard normal."""
    return np.random.default_rng([seed, index]).standard_normal(latent_dim).astype(np.float32)


def _seed_index_pairs(seeds_and_indices) -> list[tuple[int, int]]:
    if (isinstance(seeds_and_indices, tuple) and len(seeds_and_indices) == 3
            and all(isinstance(v, (int, np.integer)) for v in seeds_and_indices)):
        seed, start, count = (int(v) for v in seeds_and_indices)
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        pairs = [(seed, index) for index in range(start, start + count)]
    else:
        pairs = [(int(seed), int(index)) for seed, index in seeds_and_indices]
    for seed, index in pairs:
        if seed < 0 or index < 0:
            raise ValueError(f"seeds and indices must be >= 0, got (seed={seed}, index={index})")
    return pairs


def generate_images(generator, seeds_and_indices, latent_dim: int = DEFAULT_LATENT_DIM) -> np.ndarray:
    """Images from the generator, one per `(seed, index)`: uint8 (n, H, W, C), in input order.

    `seeds_and_indices` is a list of `(seed, index)` pairs or one `(seed, start, count)`
    tuple for indices start..start+count-1. Image `(seed, index)` is the generator's
    output (inference mode) for `latent_vector(seed, index)`, and its bytes do not depend
    on which other images are generated with it.

    Raises:
        ValueError: a negative seed, index or count.
    """
    pairs = _seed_index_pairs(seeds_and_indices)
    height, width, channels = (int(v) for v in generator.output_shape[1:])
    images = np.empty((len(pairs), height, width, channels), dtype=np.uint8)
    rows_of_block: dict[tuple[int, int], dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for position, (seed, index) in enumerate(pairs):
        rows_of_block[(seed, index // GENERATE_BATCH)][index % GENERATE_BATCH].append(position)
    for (seed, block), rows in rows_of_block.items():
        latent = np.zeros((GENERATE_BATCH, latent_dim), dtype=np.float32)
        for row in rows:
            latent[row] = latent_vector(seed, block * GENERATE_BATCH + row, latent_dim)
        pixels = to_uint8(generator(latent, training=False).numpy())
        for row, positions in rows.items():
            images[positions] = pixels[row]
    return images


def to_uint8(tanh_pixels: np.ndarray) -> np.ndarray:
    """Generator output in [-1, 1] to uint8 pixels, rounded (the inverse of training's scaling)."""
    scaled = (np.asarray(tanh_pixels, dtype=np.float64) + 1.0) * 127.5
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def sample_grid_png(images: np.ndarray, columns: int = 8, scale: int = 2) -> bytes:
    """A PNG grid of the images, each enlarged `scale` times (nearest neighbour).

    The grid is `min(columns, n)` images wide with GRID_PADDING pixels between and around
    them; grayscale images (C == 1) give a grayscale PNG, RGB an RGB one.

    Raises:
        ValueError: no images, not uint8 (n, H, W, 1 or 3), or columns/scale < 1.
    """
    from PIL import Image

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"images must be uint8 (n, H, W, 1 or 3), got {images.dtype} {images.shape}")
    if not len(images):
        raise ValueError("no images for a grid")
    if columns < 1 or scale < 1:
        raise ValueError(f"columns and scale must be >= 1, got columns={columns}, scale={scale}")
    count, height, width, channels = images.shape
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    cell_h, cell_w = height * scale + GRID_PADDING, width * scale + GRID_PADDING
    grid = np.full((rows * cell_h + GRID_PADDING, cols * cell_w + GRID_PADDING, channels), GRID_BACKGROUND,
                   dtype=np.uint8)
    for i, image in enumerate(images):
        y, x = GRID_PADDING + (i // cols) * cell_h, GRID_PADDING + (i % cols) * cell_w
        grid[y:y + height * scale, x:x + width * scale] = image
    buffer = io.BytesIO()
    Image.fromarray(grid[..., 0] if channels == 1 else grid).save(buffer, format="PNG")
    return buffer.getvalue()
