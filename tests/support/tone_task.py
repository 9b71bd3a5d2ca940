"""A test-only task: classify a steady tone as low or high from its spectrum.

It exists to prove that a task is one module plus one registration line: nothing under
`jobs/` knows it (tests/integration/test_test_only_task.py checks both). Its examples are the log
magnitudes of 32 frequency bands of the first quarter second; its network one dense layer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from tasks.definition import Architecture, TaskDefinition
from tasks.media import MediaDecodeError
from tasks.registry import DecodedMedia, Task, define, register

BANDS = 32
SAMPLES = 4000  # a quarter second at 16 kHz


def band_levels(samples: np.ndarray) -> np.ndarray:
    """log(1 + magnitude) of the spectrum of `samples`, summed into BANDS equal bands."""
    spectrum = np.abs(np.fft.rfft(samples[:SAMPLES], n=SAMPLES))[1:]
    return np.log1p(np.add.reduceat(spectrum, np.linspace(0, len(spectrum), BANDS, endpoint=False).astype(int)))


@register("tone-classifier")
@dataclass(frozen=True)
class ToneClassifier(Task):
    """One example per WAV file: its band levels."""

    reads = "bytes"
    suffixes = (".wav",)
    position_columns = ()
    example_dtype = "float32"
    output_tables = ("predictions", None)
    count_column = ""

    @property
    def example_shape(self) -> tuple[int]:
        return (BANDS,)

    def decode(self, data: bytes, deadline: float | None = None) -> DecodedMedia:
        import soundfile

        try:
            samples, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001 - libsndfile's errors are many
            raise MediaDecodeError(f"not a readable WAV ({exc})") from None
        if len(samples) < SAMPLES:
            raise MediaDecodeError(f"shorter than {SAMPLES} samples")
        return DecodedMedia(band_levels(samples.mean(axis=1))[np.newaxis].astype(np.float32), [{}])

    def build_model(self, architecture: str, num_classes: int, learning_rate: float):
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((BANDS,)), tf.keras.layers.LayerNormalization(),
                                     tf.keras.layers.Dense(num_classes, activation="softmax")])
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model


DEFINITION = define(TaskDefinition("tone-classifier", ToneClassifier, (Architecture("tone-dense"),),
                                   modality="tone"))
