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
    import tensorflow as tf

    class DCGAN(tf.keras.Model):
        """A generator and a discriminator trained against each other by `fit`.

        `fit` takes batches of uint8-range images, or `(images, labels)` (labels are
        ignored). Logs `g_loss` and `d_loss`: epoch means over all examples of all
        replicas, the same on every worker.

        Under a distribution strategy each replica's loss is its per-example sum divided
        by the global batch size (local batch x replicas in sync), so the summed
        gradients the optimizers apply are those of the global mean. Replicas should
        therefore get equal batches (drop the last, smaller batch).
        """

        def __init__(self, generator, discriminator, **kwargs):
            super().__init__(**kwargs)
            self.generator = generator
            self.discriminator = discriminator
            self.latent_dim = int(generator.input_shape[-1])
            self.g_loss_tracker = tf.keras.metrics.Mean(name="g_loss")
            self.d_loss_tracker = tf.keras.metrics.Mean(name="d_loss")
            # train_step returns epoch means of losses already all-reduced across replicas,
            # the same on every replica. The default "auto" sums step outputs again across
            # workers: with 2 MWMS workers the per-batch logs showed twice the loss (fit's
            # epoch logs were right: it rereads the metrics). "first" takes them as they are.
            self.distribute_reduction_method = "first"

        @property
        def metrics(self):
            return [self.g_loss_tracker, self.d_loss_tracker]  # reset by fit at each epoch

        def compile(self, g_optimizer, d_optimizer, **kwargs):
            # The discriminator's optimizer doubles as `self.optimizer`, so callbacks that
            # read `model.optimizer.iterations` count training steps.
            super().compile(optimizer=d_optimizer, **kwargs)
            self.g_optimizer = g_optimizer
            self.d_optimizer = d_optimizer

        def call(self, latent, training=None):
            return self.generator(latent, training=training)

        def save(self, filepath, *args, **kwargs):
            # Model.save of this subclass writes a `.keras` file that load_model cannot
            # read back ("Could not locate class 'DCGAN'"); fail loudly instead.
            raise NotImplementedError(
                f"a DCGAN is not saved with model.save({str(filepath)!r}): use "
                "tasks.gan.save_gan(model, directory) and load_gan(directory, learning_rate)")

        def train_step(self, data):
            images = _images_of(data)
            real = tf.cast(images, tf.float32) / 127.5 - 1.0
            batch_size = tf.shape(real)[0]
            latent = tf.random.normal([batch_size, self.latent_dim])
            cross_entropy = tf.keras.losses.BinaryCrossentropy(
                from_logits=True, reduction=tf.keras.losses.Reduction.NONE)
            with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
                fake = self.generator(latent, training=True)
                real_logits = self.discriminator(real, training=True)
                fake_logits = self.discriminator(fake, training=True)
                # Non-saturating loss: the generator maximises log D(fake).
                g_loss = tf.nn.compute_average_loss(cross_entropy(tf.ones_like(fake_logits), fake_logits))
                d_loss = tf.nn.compute_average_loss(
                    cross_entropy(tf.ones_like(real_logits), real_logits)
                    + cross_entropy(tf.zeros_like(fake_logits), fake_logits))
            self.g_optimizer.apply_gradients(
                zip(g_tape.gradient(g_loss, self.generator.trainable_variables),
                    self.generator.trainable_variables))
            self.d_optimizer.apply_gradients(
                zip(d_tape.gradient(d_loss, self.discriminator.trainable_variables),
                    self.discriminator.trainable_variables))
            g_global, d_global = tf.distribute.get_replica_context().all_reduce("SUM", [g_loss, d_loss])
            self.g_loss_tracker.update_state(g_global)
            self.d_loss_tracker.update_state(d_global)
            return {"g_loss": self.g_loss_tracker.result(), "d_loss": self.d_loss_tracker.result()}

    return DCGAN


def _images_of(data):
    """The image tensor of a training batch: images, (images, labels...) or {name: images}."""
    if isinstance(data, dict):
        if len(data) != 1:
            raise ValueError(f"a GAN trains on images only; got a batch with columns {sorted(data)}")
        return next(iter(data.values()))
    if isinstance(data, (tuple, list)):
        return _images_of(data[0])
    return data


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
