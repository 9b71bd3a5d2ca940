"""The gan task: learns to generate images like its training images with the seeds' DCGAN.

The model itself (networks, training step, saving, sampling) is `tasks.dcgan`; its names are
importable from here too, as `tasks.gan.save_gan` and so on. `tasks.gan.DCGAN`, the Keras
model class, is created on first use (it needs TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks import dcgan
from tasks.dcgan import (
    DEFAULT_IMAGE_SHAPE,
    DEFAULT_LATENT_DIM,
    DEFAULT_LEARNING_RATE,
    GENERATE_BATCH,
    GENERATOR_FILE,
    GRID_PADDING,
    build_dcgan,
    build_discriminator,
    build_generator,
    check_image_shape,
    export_generator,
    generate_images,
    latent_vector,
    load_gan,
    load_generator,
    sample_grid_png,
    save_gan,
    to_uint8,
)
from tasks.definition import Architecture, TaskDefinition
from tasks.gan_training import GanPlan
from tasks.image_classifier import IMAGE_SUFFIXES, decode_image
from tasks.protocols import Trainable
from tasks.registry import DecodedMedia, Task, define, register

__all__ = ["ARCHITECTURES", "DCGAN_ARCHITECTURE", "DEFAULT_IMAGE_SHAPE", "DEFAULT_LATENT_DIM",
           "DEFAULT_LEARNING_RATE", "DEFINITION", "GENERATE_BATCH", "GENERATOR_FILE", "GRID_PADDING", "GanTask",
           "build_dcgan", "build_discriminator", "build_generator", "check_image_shape", "export_generator",
           "generate_images", "latent_vector", "load_gan", "load_generator", "sample_grid_png", "save_gan",
           "to_uint8"]

ARCHITECTURES = ("dcgan",)  # DCGAN_ARCHITECTURE below: its spec fields and checks


def __getattr__(name: str) -> Any:
    """`tasks.gan.DCGAN`, the tf.keras.Model subclass (`tasks.dcgan.DCGAN`), created when first asked for."""
    if name == "DCGAN":
        return dcgan.DCGAN
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# --- the task ----------------------------------------------------------------------------------


@register("gan")
@dataclass(frozen=True)
class GanTask(Task):
    """Learns to generate images like the training images (DCGAN); one example per object."""

    image_shape: tuple[int, int, int] = DEFAULT_IMAGE_SHAPE
    latent_dim: int = DEFAULT_LATENT_DIM

    reads = "bytes"
    suffixes = IMAGE_SUFFIXES
    position_columns = ()
    example_dtype = "uint8"
    output_tables = ("index", None)  # (one row per generated image, one row per object)
    count_column = ""

    def __post_init__(self) -> None:
        check_image_shape(self.image_shape)
        if isinstance(self.latent_dim, bool) or not isinstance(self.latent_dim, int) or self.latent_dim < 1:
            raise ValueError(f"latent_dim must be a whole number >= 1, got {self.latent_dim!r}")

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.image_shape)

    def decode(self, data: bytes, deadline: float | None = None) -> DecodedMedia:
        return DecodedMedia(decode_image(data, self.image_shape)[np.newaxis], [{}])

    def build_model(self, architecture: str, num_classes: int, learning_rate: float):
        """A compiled DCGAN; `num_classes` is ignored (a GAN has no classes)."""
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
        return build_dcgan(self.image_shape, self.latent_dim, learning_rate)


def _generator_sizes(fields) -> str | None:
    image_shape = fields.get("image_shape")
    if image_shape is not None and (image_shape[0] % 4 or image_shape[1] % 4):
        return (f"image_shape: height and width must be multiples of 4 (the generator upsamples twice "
                f"by 2), got {list(image_shape)}; e.g. [28, 28, 1] or [32, 32, 3]")
    return None


# Not `DCGAN`: that name is the Keras model class, created on first use (`__getattr__`).
DCGAN_ARCHITECTURE = Architecture("dcgan", {"image_shape": DEFAULT_IMAGE_SHAPE, "latent_dim": DEFAULT_LATENT_DIM},
                                  refused_hint="dcgan sets the image size with image_shape", outputs="none",
                                  check=_generator_sizes)
DEFINITION = define(TaskDefinition("gan", GanTask, (DCGAN_ARCHITECTURE,), produces="images", data=("train",),
                                   training_plan=GanPlan(), job_hint="kind: generate samples a trained GAN"))
# mypy checks the class against the contract the job layers rely on (tasks.protocols).
_CONTRACT: type[Trainable] = GanTask
