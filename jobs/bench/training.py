"""Training throughput: our Ray Train MWMS job against one process's `model.fit`.

Both train the CIFAR-10 CNN on the same decoded images with the same global batch size
and count samples per second over the epochs after the first (the first traces the
graph; with MWMS it also sets up the collectives). Ours also reports its end-to-end rate
(decoding, worker start-up and checkpoints included), for docs/performance.md's honesty.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from jobs.bench.image import INPUT_SHAPE


def ours(images: str, output: str, epochs: int, batch: int) -> dict[str, float]:
    """Samples/s of `mediajobs run` of a train spec on 2 workers (the spec default)."""
    from jobs.models.store import read_model_metadata
    from jobs.runs.train import run_train
    from jobs.spec.load import TrainSpec, parse_spec

    spec = parse_spec({"version": 1, "kind": "train", "name": "bench-train", "task": "image-classifier",
                       "model": {"architecture": "cifar10-cnn", "input_shape": list(INPUT_SHAPE)},
                       "data": {"train": images}, "output": output,
                       "training": {"epochs": epochs, "batch_size": batch}}, "<bench>")
    assert isinstance(spec, TrainSpec)  # kind: train
    result = run_train(spec, echo=lambda message: None)
    history = read_model_metadata(result.model_uri)["history"]
    steady = [h["epoch_seconds"] for h in history[1:]] or [history[0]["epoch_seconds"]]
    return {"samples_s": result.examples / statistics.median(steady),
            "end_to_end_samples_s": result.examples * len(history) / result.seconds}


def single_process(images: str, epochs: int, batch: int) -> float:
    """Samples/s of `model.fit` on the decoded arrays in this process, all cores."""
    import tensorflow as tf

    from tasks.image_classifier import build_cnn

    pixels, labels = decoded(images)
    tf.keras.utils.set_random_seed(0)
    model = build_cnn("cifar10-cnn", INPUT_SHAPE, int(labels.max()) + 1)
    seconds: list[float] = []

    class EpochTimer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.began)

    model.fit(pixels, labels, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[EpochTimer()])
    return len(labels) / statistics.median(seconds[1:] or seconds)


def decoded(images: str) -> tuple[np.ndarray, np.ndarray]:
    """The training images decoded as our pipeline decodes them, with class ids by folder."""
    from jobs.storage.objects import list_objects
    from jobs.workers.decoding import fetch_and_decode
    from tasks.image_classifier import ImageClassifier

    objects = list(list_objects(images))
    classes = sorted({o.uri.rsplit("/", 2)[-2] for o in objects})
    batch = {"uri": np.array([o.uri for o in objects], dtype=object), "size": np.array([o.size for o in objects]),
             "label": np.array([classes.index(o.uri.rsplit("/", 2)[-2]) for o in objects])}
    out = fetch_and_decode(batch, task=ImageClassifier(INPUT_SHAPE), keep_errors=False)
    return out["example"], out["label"]
