"""A task defined under tests/ goes through validate, train, score and a nightly route with
one registration line and no change under jobs/ (issue 20: task definitions are the single
source of task knowledge)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from jobs.datasets.ingest import ingest_folder
from jobs.errors import SpecError
from jobs.runs.dispatch import run_spec
from jobs.spec.load import parse_spec
from jobs.storage.delta import read_table
from support.paths import ROOT
from tasks.registry import add_task_module, remove_task_module

JOBS = ROOT / "jobs"
MEDIA, MODELS, SCORES = "s3://it-media/tones/", "s3://it-models/tones/", "s3://it-scores/tones/"


@pytest.fixture(scope="module")
def tone_task():
    # The one line that registers the task. Its module must import on the Ray workers too: they
    # have the driver's working directory (the checkout) on their path, so `tests.support...`.
    add_task_module("tone-classifier", "tests.support.tone_task")
    yield
    remove_task_module("tone-classifier")


def _write_tones(root: Path, per_class: int, seed: int) -> None:
    """Low (150-400 Hz) and high (1500-3500 Hz) tones at random levels, with noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(16000 // 2) / 16000
    for label, (low, high) in {"low": (150, 400), "high": (1500, 3500)}.items():
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            tone = rng.uniform(0.1, 0.8) * np.sin(2 * np.pi * rng.uniform(low, high) * t + rng.uniform(0, 6.3))
            clip = (tone + rng.normal(0, 0.05, len(t))).astype(np.float32)
            soundfile.write(root / label / f"{label}-{i:03d}.wav", clip, 16000, subtype="PCM_16")


@pytest.fixture(scope="module")
def tone_model(tone_task, ray_driver, tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    _write_tones(root / "train", 40, seed=1)
    _write_tones(root / "test", 10, seed=2)
    ingest_folder(root, MEDIA)
    spec = parse_spec({"version": 1, "kind": "train", "name": "tones", "task": "tone-classifier",
                       "model": {"architecture": "tone-dense"},
                       "data": {"train": MEDIA + "train/", "validation": MEDIA + "test/"},
                       "training": {"epochs": 10, "learning_rate": 0.01}, "resources": {"num_workers": 1},
                       "output": MODELS})
    return run_spec(spec)


def test_the_spec_layer_knows_the_task_from_its_definition(tone_task):
    with pytest.raises(SpecError, match="model: architecture: task tone-classifier trains tone-dense, not dcgan"):
        parse_spec({"version": 1, "kind": "train", "name": "t", "task": "tone-classifier",
                    "model": {"architecture": "dcgan"}, "data": {"train": MEDIA}, "output": MODELS})
    with pytest.raises(SpecError, match=r"model: required field is missing \(.*\{architecture: tone-dense\}\)"):
        parse_spec({"version": 1, "kind": "train", "name": "t", "task": "tone-classifier",
                    "data": {"train": MEDIA}, "output": MODELS})
    with pytest.raises(SpecError, match="audio applies to task audio-classifier only"):
        parse_spec({"version": 1, "kind": "train", "name": "t", "task": "tone-classifier", "audio": {},
                    "model": {"architecture": "tone-dense"}, "data": {"train": MEDIA}, "output": MODELS})


def test_it_trains_scores_and_runs_a_nightly_route(tone_model):
    assert tone_model.class_names == ["high", "low"]
    assert tone_model.metrics["val_accuracy"] >= 0.9, tone_model.metrics

    scored = run_spec(parse_spec({"version": 1, "kind": "score", "name": "tones", "task": "tone-classifier",
                                  "model": MODELS, "input": MEDIA + "test/", "output": SCORES + "batch/"}))
    predictions = read_table(scored.tables["predictions"]).to_pandas()
    assert scored.errors == 0 and len(predictions) == 20
    assert (predictions.label == predictions.uri.str.split("/").str[-2]).mean() >= 0.9

    nightly = run_spec(parse_spec({"version": 1, "kind": "score", "name": "tone-nights", "incremental": True,
                                   "routes": [{"media": "tone", "model": MODELS}], "input": MEDIA + "test/",
                                   "output": SCORES + "nightly/"}), run_date="2026-12-01")
    assert nightly.committed and nightly.scored == 20 and nightly.errors == 0
    rows = read_table(nightly.tables["predictions"]).to_pandas()
    assert set(rows.route) == {"tone"} and len(rows) == 20


def test_nothing_under_jobs_names_the_task():
    mentions = [str(path.relative_to(JOBS.parent)) for path in JOBS.rglob("*.py")
                if any(word in path.read_text() for word in ("tone-classifier", "tone-dense", "tone_task"))]
    assert mentions == []
