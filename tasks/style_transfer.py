"""The style-transfer task: stylize images with a module that has the TF Hub
arbitrary-image-stylization signature, and train our own (AdaIN, in `tasks.adain`).

TensorFlow loads only when a module is loaded or a model built; the AdaIN names
(`AdaINTrainer`, `adain`, `channel_stats`, `export_stylizer`) are importable from here and
load it on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.adain_training import StylePlan
from tasks.definition import Architecture, TaskDefinition

# decode_full refuses what decode_image refuses: truncated files and decompression bombs.
from tasks.image_classifier import IMAGE_SUFFIXES, check_complete, check_declared_size, fit_to_input, sniff
from tasks.media import MediaDecodeError
from tasks.protocols import Trainable
from tasks.registry import DecodedMedia, Task, define, register
from tasks.saved_model_ops import UnsafeSavedModelError
from tasks.style_encoders import ENCODER_DOWNSAMPLING
from tasks.stylizing import HUB_STYLE_SIZE, checked_contents, module_style, stylize, stylize_batch

if TYPE_CHECKING:  # loaded lazily by __getattr__ below: they need TensorFlow
    from tasks.adain import AdaINTrainer, adain, channel_stats, export_stylizer

__all__ = ["ARCHITECTURES", "ENCODER_DOWNSAMPLING", "HUB_STYLE_SIZE", "AdaINTrainer", "StyleTransferTask",
           "StylizerLoadError", "adain", "center_square", "channel_stats", "decode_full", "export_stylizer",
           "load_stylizer", "result_losses", "stylize", "stylize_batch"]

ARCHITECTURES = ("adain",)
# What our exported stylizers have beside `__call__`: (content, style, stylized) -> losses.
LOSSES_FUNCTION = "stylization_losses"
_FROM_ADAIN = ("AdaINTrainer", "adain", "channel_stats", "export_stylizer")


def __getattr__(name: str) -> Any:
    if name in _FROM_ADAIN:
        from tasks import adain

        return getattr(adain, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class StylizerLoadError(RuntimeError):
    """A stylization module could not be loaded (missing, not a SavedModel, or no network)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message,))


def load_stylizer(path_or_handle: str, trust_code: bool = False) -> Callable:
    """A stylization module, called as `module(content, style) -> [stylized]`.

    `path_or_handle` is a local SavedModel directory (one written by `export_stylizer`, or a
    downloaded TF Hub module) or a tfhub.dev/Kaggle handle, which needs internet. Unless
    `trust_code`, a module whose graph could touch files or Python is refused before it is
    loaded (`tasks.saved_model_ops`).

    Raises:
        StylizerLoadError: with the cause and the fix, when it cannot be loaded.
        UnsafeSavedModelError: the module's graph reaches outside its tensors.
    """
    import tensorflow_hub as hub

    from tasks.saved_model_ops import SAVED_MODEL_FILE, check_saved_model

    try:
        directory = hub.resolve(str(path_or_handle))  # a handle is downloaded (and cached) first
        if not trust_code and os.path.isfile(os.path.join(directory, SAVED_MODEL_FILE)):
            check_saved_model(directory)
        return hub.load(directory)
    except UnsafeSavedModelError:
        raise
    except Exception as error:  # hub and TF raise OSError, ValueError, URLError, NotFoundError, ...
        raise StylizerLoadError(
            f"cannot load the stylization module {str(path_or_handle)!r}: {type(error).__name__}: "
            f"{_first_line(error)}. Download the module "
            "(e.g. TF Hub's arbitrary-image-stylization-v1-256) where there is internet and pass its local "
            "SavedModel directory or an S3 copy of it; hub handles only load with internet access.") from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(".") if lines else ""


def result_losses(module: Callable, contents: np.ndarray, style: np.ndarray, results: np.ndarray,
                  batch_size: int = 8) -> tuple[np.ndarray, np.ndarray] | None:
    """Per result, the content loss and the style loss of a stylization: float64 (N,) each, or
    None for a module that cannot measure them (the TF Hub module, stylizers exported before
    modules had `stylization_losses`).

    `contents` and their `results` are uint8 (N, H, W, 3) of one size; `style` is resized as
    `stylize_batch` does. The module's own encoder measures: the content loss is the mean squared
    distance of a result's deepest features from the AdaIN target (the content's features with
    the style's channel statistics), the style loss the distance of its features' channel means
    and standard deviations from the style's, summed over the encoder's layers: the trainer's
    losses. `results=contents` gives the contents' own losses.
    """
    import tensorflow as tf

    measure = getattr(module, LOSSES_FUNCTION, None)
    if measure is None:
        return None
    contents, results = checked_contents(contents), checked_contents(results, "results")
    style01 = module_style(style)
    if results.shape != contents.shape:
        raise ValueError(f"results must match the contents' shape {contents.shape}, got {results.shape}")
    content_loss, style_loss = np.empty(len(contents)), np.empty(len(contents))
    for start in range(0, len(contents), batch_size):
        end = min(start + batch_size, len(contents))
        losses = measure(tf.constant(contents[start:end].astype(np.float32) / 255.0), tf.constant(style01),
                         tf.constant(results[start:end].astype(np.float32) / 255.0))
        content_loss[start:end], style_loss[start:end] = losses["content_loss"], losses["style_loss"]
    return content_loss, style_loss


def decode_full(data: bytes) -> np.ndarray:
    """Image bytes to uint8 RGB (H, W, 3) at the image's own size (EXIF orientation applied,
    grayscale to RGB, alpha dropped, 16-bit to 8-bit), for stylizing.

    Raises:
        MediaDecodeError: empty, truncated, undecodable, or too large objects.
    """
    import cv2

    if not data:
        raise MediaDecodeError("empty object (0 bytes)")
    check_complete(data)
    check_declared_size(data)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise MediaDecodeError(f"not a decodable image ({sniff(data)})")
    return fit_to_input(image, (image.shape[0], image.shape[1], 3))


@dataclass(frozen=True)
class FullImageDecoder:
    """`decode_full` as a decoder for `jobs.workers.decode_isolation`: a content image at its own size
    (any shape, so `example_shape` is None; its pixels are bounded by `max_pixels`)."""

    reads = "bytes"
    example_shape = None
    example_dtype = "uint8"

    def decode(self, data: bytes, deadline: float | None = None) -> DecodedMedia:
        return DecodedMedia(decode_full(data)[np.newaxis], [{}])


def center_square(image: np.ndarray, size: int) -> np.ndarray:
    """The largest centred square of an (H, W, 3) image, resized to (size, size, 3)."""
    import cv2

    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    if side != size:
        square = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    return np.ascontiguousarray(square, dtype=np.uint8)


@register("style-transfer")
@dataclass(frozen=True)
class StyleTransferTask(Task):
    """Trains AdaIN stylizers on content and style images (one centred square crop per
    object, `image_size` pixels a side) with a frozen `encoder` ("tiny" or "vgg19")."""

    image_size: int = 64
    encoder: str = "tiny"

    reads = "bytes"
    suffixes = IMAGE_SUFFIXES
    position_columns = ()
    example_dtype = "uint8"
    output_tables = ("results", None)  # (one row per example, one row per object)
    count_column = ""

    def __post_init__(self) -> None:
        if self.encoder not in ENCODER_DOWNSAMPLING:
            raise ValueError(f"unknown encoder {self.encoder!r}; valid: {', '.join(ENCODER_DOWNSAMPLING)}")
        factor = ENCODER_DOWNSAMPLING[self.encoder]
        if self.image_size < factor or self.image_size % factor:
            raise ValueError(f"image_size must be a positive multiple of {factor} for the {self.encoder} encoder, "
                             f"got {self.image_size}")

    @property
    def example_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def decode(self, data: bytes, deadline: float | None = None) -> DecodedMedia:
        return DecodedMedia(center_square(decode_full(data), self.image_size)[np.newaxis], [{}])

    def decode_full(self, data: bytes) -> np.ndarray:
        """The image at its own size, for stylizing (see the module's `decode_full`)."""
        return decode_full(data)

    def build_model(self, architecture: str, num_classes: int, learning_rate: float):
        """A compiled `AdaINTrainer` (`num_classes` is ignored: there are no classes)."""
        import tensorflow as tf

        from tasks.adain import AdaINTrainer

        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
        trainer = AdaINTrainer(encoder=self.encoder)
        trainer.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate))
        return trainer


def _encoder_sizes(fields) -> str | None:
    image_size, encoder = fields.get("image_size"), fields.get("encoder")
    if image_size is not None and encoder is not None:
        factor = ENCODER_DOWNSAMPLING[encoder]
        if image_size % factor:
            return (f"image_size: must be a multiple of {factor} for the {encoder} encoder "
                    f"(got {image_size}); e.g. {image_size // factor * factor or factor}")
    return None


ADAIN = Architecture("adain", {"image_size": 256, "encoder": "vgg19"}, outputs="none", check=_encoder_sizes,
                     choices={"encoder": tuple(ENCODER_DOWNSAMPLING)})
DEFINITION = define(TaskDefinition(
    "style-transfer", StyleTransferTask, (ADAIN,), produces="stylizations", data=("train", "style"),
    data_hints={"style": "style-transfer trains on content images (train) and style images (style); "
                         "add style: s3://bucket/styles/"},
    training_plan=StylePlan(), job_hint="kind: stylize restyles images"))
# mypy checks the class against the contract the job layers rely on (tasks.protocols).
_CONTRACT: type[Trainable] = StyleTransferTask
