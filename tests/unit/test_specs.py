"""Unit tests for job specs: the examples, defaults, round trip and hashing, and loading without
mutating the input. The wording of every error: test_spec_errors.py, test_spec_sources.py,
test_spec_tasks.py."""

from __future__ import annotations

import copy
import re

import pydantic
import pytest
import yaml

from jobs.spec.load import ImageModelConfig, ScoreSpec, TrainSpec, load_spec, parse_spec, spec_hash, spec_to_dict
from support.paths import EXAMPLES
from support.spec_cases import MINIMAL_SCORE, MINIMAL_TRAIN, spec_error, with_changes


# --- examples, defaults, round trip ---------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads(path):
    spec = load_spec(path)
    assert spec.kind in ("train", "score", "generate", "stylize")
    assert path.stem.startswith(spec.kind)


def test_examples_are_the_ones_the_demo_uses():
    names = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert {"train-cifar10.yaml", "score-images.yaml", "train-demo.yaml", "score-demo.yaml"} <= names
    demo = load_spec(EXAMPLES / "train-demo.yaml")
    assert (demo.name, demo.data.train, demo.data.validation) == (
        "demo-cnn", "s3://media/demo/train/", "s3://media/demo/test/")
    assert (demo.training.epochs, demo.training.batch_size, demo.output) == (4, 32, "s3://models/demo-cnn/")
    score = load_spec(EXAMPLES / "score-demo.yaml")
    assert (score.model, score.input, score.output) == (
        "s3://models/demo-cnn/", "s3://media/demo/test/", "s3://scores/demo/")


def test_train_defaults_apply():
    spec = parse_spec(MINIMAL_TRAIN)
    assert isinstance(spec, TrainSpec)
    assert spec.model.input_shape == (32, 32, 3)
    assert spec.data.validation is None
    assert spec.training.model_dump() == {
        "epochs": 10, "batch_size": 64, "learning_rate": 0.001, "seed": 0, "max_failures": 2,
        "early_stopping": None}
    assert spec.resources.model_dump() == {"num_workers": 2, "use_gpu": False, "cpus_per_worker": 1,
                                           "gpus_per_worker": 0, "placement_strategy": "PACK"}


def test_input_shape_default_depends_on_architecture():
    spec = parse_spec(with_changes(MINIMAL_TRAIN, model={"architecture": "binary-cnn"}))
    assert spec.model == ImageModelConfig(architecture="binary-cnn", input_shape=(64, 64, 3))


def test_score_defaults_apply():
    spec = parse_spec(MINIMAL_SCORE)
    assert isinstance(spec, ScoreSpec)
    assert (spec.batch_size, spec.top_k) == (256, 3)
    assert spec.resources.model_dump() == {"concurrency": 2, "use_gpu": False, "num_gpus": 0, "cpus_per_actor": 1}


def test_round_trip_and_hash():
    spec = load_spec(EXAMPLES / "train-cifar10.yaml")
    assert parse_spec(spec_to_dict(spec)) == spec
    assert re.fullmatch(r"[0-9a-f]{12}", spec_hash(spec))
    # Defaults are part of the hash: spelling them out changes nothing, changing one does.
    explicit = parse_spec(with_changes(MINIMAL_TRAIN, training={"epochs": 10}))
    assert spec_hash(explicit) == spec_hash(parse_spec(MINIMAL_TRAIN))
    # Except the batch size (issue 19): unset, the job lowers it to fit the data; set, it is
    # taken as given. The two specs mean different jobs, and a submitted spec keeps which.
    set_batch = parse_spec(with_changes(MINIMAL_TRAIN, training={"batch_size": 64}))
    assert spec_hash(set_batch) != spec_hash(explicit)
    assert parse_spec(spec_to_dict(set_batch)).training.batch_size_is_set
    assert not parse_spec(spec_to_dict(explicit)).training.batch_size_is_set
    assert spec_hash(parse_spec(MINIMAL_TRAIN, overrides=["training.epochs=11"])) != spec_hash(explicit)


def test_specs_are_frozen():
    spec = parse_spec(MINIMAL_TRAIN)
    with pytest.raises(pydantic.ValidationError):
        spec.training.epochs = 3


def test_exponent_without_dot_is_a_float(write_spec):
    text = yaml.safe_dump(MINIMAL_TRAIN) + "training: {learning_rate: 1e-3}\n"
    assert load_spec(write_spec(text)).training.learning_rate == 0.001

# --- purity -----------------------------------------------------------------------------------------

def test_input_is_not_mutated():
    data = with_changes(MINIMAL_TRAIN, resources=None)
    data.pop("resources")
    before = copy.deepcopy(data)
    parse_spec(data, overrides=["resources.num_workers=4", "model.architecture=binary-cnn"])
    assert data == before  # no resources added, no input_shape default filled in


def test_input_is_not_mutated_when_invalid():
    data = with_changes(MINIMAL_TRAIN, training={"epochs": 0})
    before = copy.deepcopy(data)
    spec_error(data, overrides=["training.batch_size=1"])
    assert data == before
