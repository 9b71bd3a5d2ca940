"""Models that learn with their defaults, on 1 or 2 MWMS workers alike (issue 19), on the real stack.

Four spoken words in ten espeak-ng voices at three speeds: eight voices train, two voices the
model never hears are held out. The train specs set no `training` section at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from jobs.storage.delta import read_table
from jobs.datasets.ingest import ingest_folder
from jobs.models.store import load_keras_model, read_model_metadata
from jobs.runs.dispatch import run_spec
from jobs.spec.load import parse_spec
from jobs.datasets.synthetic import write_spoken_words
from jobs.models.task_config import task_config_from_metadata
from support.shared_models import shapes_spec

pytestmark = pytest.mark.integration  # espeak-ng: the test command installs it
WORDS = ("yes", "no", "up", "down")
TRAIN_VOICES, TEST_VOICES = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4"), ("m5", "f5")
SPEEDS = (130, 160, 190)


def words_spec(output: str, workers: int, **training) -> dict:
    spec = {"version": 1, "kind": "train", "name": "words", "task": "audio-classifier",
            "model": {"architecture": "mfcc-lstm"},
            "data": {"train": "s3://it-media/words/train/", "validation": "s3://it-media/words/test/"},
            "resources": {"num_workers": workers}, "output": output}
    return {**spec, "training": training} if training else spec


@pytest.fixture(scope="module")
def words(ray_driver, tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    assert write_spoken_words(root / "train", WORDS, TRAIN_VOICES, SPEEDS) == 96
    assert write_spoken_words(root / "test", WORDS, TEST_VOICES, SPEEDS) == 24
    ingest_folder(root, "s3://it-media/words/")
    return root


@pytest.fixture(scope="module")
def words_two_workers(words):
    return run_spec(parse_spec(words_spec("s3://it-models/words-2/", 2)))


@pytest.fixture(scope="module")
def words_one_worker(words):
    return run_spec(parse_spec(words_spec("s3://it-models/words-1/", 1)))


def test_the_default_spec_learns_four_words_from_unheard_voices(words_two_workers):
    scored = run_spec(parse_spec({
        "version": 1, "kind": "score", "name": "words", "task": "audio-classifier",
        "model": "s3://it-models/words-2/", "input": "s3://it-media/words/test/", "output": "s3://it-scores/words/"}))
    files = read_table(scored.tables["files"]).to_pandas()
    truth = files.uri.str.split("/").str[-2]
    accuracy = float((files.label == truth).mean())
    print(f"held-out per-file accuracy with the default spec on 2 workers: {accuracy:.3f}")

    assert len(files) == 24 and accuracy >= 0.85, files[["uri", "label"]]  # chance: 0.25
    metadata = read_model_metadata("s3://it-models/words-2/")
    # 64 would have been 1 step per epoch; the job lowered it and said why.
    assert metadata["batch_size"] == 12 and "training.batch_size is unset: 12 instead of 64" in metadata["batch_size_reason"]
    assert metadata["feature_statistics"]["frames"] > 96 * 20 and len(metadata["feature_statistics"]["mean"]) == 13
    assert {h["steps"] for h in metadata["history"]} == {8}  # 96 examples / global batch 12


def test_one_and_two_workers_reach_the_same_accuracy(words_one_worker, words_two_workers):
    one, two = words_one_worker.metrics, words_two_workers.metrics
    print(f"val_accuracy: 1 worker {one['val_accuracy']:.3f}, 2 workers {two['val_accuracy']:.3f}")

    assert one["steps"] == two["steps"] == 8  # the batch is global: the same steps per epoch
    assert abs(one["val_accuracy"] - two["val_accuracy"]) <= 0.02, (one, two)
    assert min(one["val_accuracy"], two["val_accuracy"]) >= 0.85


def test_early_stopping_exports_the_best_epoch_and_says_why(words):
    result = run_spec(parse_spec(words_spec(
        "s3://it-models/words-early/", 2, epochs=40, early_stopping={"monitor": "val_accuracy", "patience": 2})))
    metadata = read_model_metadata("s3://it-models/words-early/")
    stopping, history = metadata["early_stopping"], metadata["history"]
    best = stopping["best_epoch"]

    assert result.epochs_run == len(history) == stopping["stopped_after"] < 40
    assert best == metadata["exported_epoch"] == result.exported_epoch == result.epochs_run - 2
    assert max(h["val_accuracy"] for h in history) == history[best - 1]["val_accuracy"] == metadata["metrics"]["val_accuracy"]
    assert stopping["reason"].startswith(f"epoch {best} had the highest val_accuracy")
    # The exported model is the best epoch's, not the last one's: its loss on the held-out
    # windows is the best epoch's (the loss still fell after the accuracy stopped rising).
    model, _ = load_keras_model("s3://it-models/words-early/")
    loss = _held_out_loss(model, metadata, words / "test")
    assert loss == pytest.approx(history[best - 1]["val_loss"], rel=1e-4)
    assert loss != pytest.approx(history[-1]["val_loss"], rel=1e-4)


def _held_out_loss(model, metadata: dict, root) -> float:
    from tasks import get_task

    task = get_task(metadata["task"])(**task_config_from_metadata(metadata))
    losses = []
    for label, name in enumerate(metadata["class_names"]):
        for path in sorted((root / name).glob("*.wav")):
            probabilities = model(task.decode(path.read_bytes()).examples, training=False).numpy()
            losses += list(-np.log(np.clip(probabilities[:, label].astype(np.float64), 1e-7, 1.0)))
    return float(np.mean(losses))


# --- the image classifier ---------------------------------------------------------------------------


def test_one_and_two_workers_train_the_image_classifier_alike(parity_shapes, shapes_two_workers):
    # The 2-worker run is the session's (conftest.shapes_two_workers; test_image_pipeline scores with it).
    one, two = run_spec(parse_spec(shapes_spec(1))).metrics, shapes_two_workers.metrics
    print(f"shapes val_accuracy: 1 worker {one['val_accuracy']:.3f}, 2 workers {two['val_accuracy']:.3f}")

    assert one["steps"] == two["steps"]
    assert abs(one["val_accuracy"] - two["val_accuracy"]) <= 0.02, (one, two)
    assert min(one["val_accuracy"], two["val_accuracy"]) > 0.9
