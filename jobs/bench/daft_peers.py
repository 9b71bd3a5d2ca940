"""Daft, the other engine people weigh for media batch inference, written as its authors do.

Image classification follows Daft's own benchmark (`Eventual-Inc/Daft`, `benchmarking/ai/
image_classification/daft_main.py`): URLs -> `download()` -> `decode_image` -> transform ->
a `@daft.cls` model with its batch size and concurrency -> `write_parquet`. Audio follows
Daft's audio functions (`audio_file` -> `resample`) with the MFCCs and the model as batch
methods. Daft runs with its default local (native) runner: on one machine that is what Daft
recommends; its benchmark's `set_runner_ray()` is for its 8-node cluster.

Each Daft run is a process of its own, as a user's Daft script is: its imports (Daft,
TensorFlow) come before the clock starts, as in Daft's benchmark, and the bench's Ray
connection cannot capture it (Daft would take a connected Ray as its runner). Daft reads
and writes S3 itself (its Rust client), so it gets the store's endpoint and credentials as
an `IOConfig`, never printed.
"""

from __future__ import annotations

import time

import numpy as np

from jobs.bench.image import BATCH, INPUT_SHAPE

# One model instance, as in the trial that opened issue 22 (476-479 images/s): on 2 cores
# a second would take a core from Daft's decoding threads. Not tuned further.
MODEL_CONCURRENCY = 1


def daft_available() -> bool:
    """Daft is an optional peer (`pip install 'mediajobs[bench]'`); the bench skips it without."""
    try:
        import daft  # noqa: F401
    except ImportError:
        return False
    return True


def image_daft(images: str, model_uri: str, output: str) -> float:
    """Images per second of Daft's image-classification recipe, listing (Daft's own glob) to Parquet."""
    return _in_own_process(_image_pipeline, images, model_uri, output)


def audio_daft(clips: str, model_uri: str, output: str) -> float:
    """Clips per second of Daft's audio functions: `audio_file` -> `resample` (soundfile and
    librosa under Daft) -> MFCCs, a batch function -> the audio model, a `@daft.cls` ->
    `write_parquet`, a label per clip as Ray Data's audio peer writes it."""
    return _in_own_process(_audio_pipeline, clips, model_uri, output)


def _audio_pipeline(clips: str, model_uri: str, output: str) -> int:
    import daft
    from daft import col
    from daft.functions import audio_file, resample

    from jobs.bench.media import AUDIO, mfcc_windows

    io_config = _io_config()
    daft.set_planning_config(default_io_config=io_config)

    @daft.func.batch(return_dtype=daft.DataType.python())
    def mfccs(signals):
        return [mfcc_windows(np.asarray(signal, np.float32)) for signal in signals.to_pylist()]

    classifier = _daft_clip_classifier()(model_uri)
    df = daft.from_glob_path(clips.rstrip("/") + "/*.wav", io_config=io_config)
    clip = audio_file(col("path"), io_config=io_config)
    df = df.with_column("signal", resample(clip, sample_rate=AUDIO["sample_rate"]))
    df = df.with_column("mfcc", mfccs(col("signal")))
    df = df.select(col("path").alias("uri"), classifier(col("mfcc")))
    df.write_parquet(output, io_config=io_config)
    return _rows(output)


def _in_own_process(pipeline, *args) -> float:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_timed, (pipeline, *args))


def _timed(pipeline, *args) -> float:
    import daft
    import tensorflow  # noqa: F401  (imported before the clock, as at the top of Daft's script)

    daft.set_runner_native()
    began = time.perf_counter()
    return pipeline(*args) / (time.perf_counter() - began)


def _image_pipeline(images: str, model_uri: str, output: str) -> int:
    import daft
    from daft import col

    io_config = _io_config()
    daft.set_planning_config(default_io_config=io_config)
    classifier = _daft_classifier()(model_uri)
    df = daft.from_glob_path(images.rstrip("/") + "/**/*.jpg", io_config=io_config)
    df = df.with_column("image", col("path").download().decode_image(on_error="null", mode="RGB"))
    df = df.where(col("image").not_null())  # as Daft's benchmark: an image that won't decode is dropped
    height, width = INPUT_SHAPE[:2]
    df = df.with_column("image", col("image").resize(width, height))
    df = df.select(col("path").alias("uri"), classifier(col("image")))  # unnested: label, score
    df.write_parquet(output, io_config=io_config)
    return _rows(output)


def _daft_classifier():
    """The `@daft.cls` model, made on first use so that importing this module needs no Daft."""
    import daft

    prediction = daft.DataType.struct({"label": daft.DataType.string(), "score": daft.DataType.float32()})

    @daft.cls(max_concurrency=MODEL_CONCURRENCY)
    class Classifier:
        def __init__(self, model_uri: str) -> None:
            from jobs.bench.models import graph_model

            self.predict, self.class_names = graph_model(model_uri)

        @daft.method.batch(return_dtype=prediction, unnest=True, batch_size=BATCH)
        def __call__(self, images):
            pixels = np.stack(images.to_pylist())
            probabilities = self.predict(pixels).numpy()
            return [{"label": label, "score": float(score)} for label, score in
                    zip(self.class_names[probabilities.argmax(axis=1)], probabilities.max(axis=1))]

    return Classifier


def _daft_clip_classifier():
    import daft

    from jobs.bench.media import ClipClassifier

    prediction = daft.DataType.struct({"label": daft.DataType.string(), "score": daft.DataType.float32()})

    @daft.cls(max_concurrency=MODEL_CONCURRENCY)
    class Clips:
        def __init__(self, model_uri: str) -> None:
            self.model = ClipClassifier(model_uri)

        @daft.method.batch(return_dtype=prediction, unnest=True, batch_size=BATCH)
        def __call__(self, windows):
            labels, scores = self.model.classify(np.stack(windows.to_pylist()))
            return [{"label": label, "score": float(score)} for label, score in zip(labels, scores)]

    return Clips


def _io_config():
    import daft

    from jobs.storage.settings import resolve_s3_settings

    settings = resolve_s3_settings()
    return daft.io.IOConfig(s3=daft.io.S3Config(
        endpoint_url=settings.endpoint, key_id=settings.access_key, access_key=settings.secret_key,
        region_name=settings.region, use_ssl=bool(settings.endpoint and settings.endpoint.startswith("https")),
        force_virtual_addressing=False))


def _rows(output: str) -> int:
    from jobs.bench.image import _rows as rows
    from jobs.storage.objects import parse_uri

    return rows(parse_uri(output))
