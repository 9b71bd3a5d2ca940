"""The wording of spec errors: unknown fields, kinds, tasks and values, each naming the field and the fix."""

from __future__ import annotations

import pytest

from jobs.spec.load import parse_spec
from support.spec_cases import MINIMAL_SCORE, MINIMAL_TRAIN, spec_error, with_changes


def test_unknown_field_suggests_the_closest_key_of_that_model():
    message = spec_error(with_changes(MINIMAL_TRAIN, training={"epoch": 3}))
    assert message == "specs/train.yaml: training.epoch: unknown field; did you mean 'epochs'?"


def test_unknown_field_without_close_match_lists_valid_keys():
    message = spec_error(with_changes(MINIMAL_TRAIN, resources={"gpus_total": 3}))
    assert message == ("specs/train.yaml: resources.gpus_total: unknown field; "
                       "valid fields: num_workers, use_gpu, cpus_per_worker, gpus_per_worker, placement_strategy")


def test_field_of_the_other_kind_says_so():
    message = spec_error(with_changes(MINIMAL_TRAIN, top_k=3))
    assert message.startswith("specs/train.yaml: top_k: unknown field (it is a field of kind score); valid fields:")


def test_wrong_type_names_path_expectation_and_value():
    message = spec_error(with_changes(MINIMAL_TRAIN, training={"epochs": "ten"}))
    assert message == "specs/train.yaml: training.epochs: must be an integer >= 1 (got 'ten')"


@pytest.mark.parametrize("section, value, expected", [
    ("training", {"batch_size": 0}, "training.batch_size: must be an integer between 1 and 65536 (got 0)"),
    ("training", {"learning_rate": 0}, "training.learning_rate: must be a number > 0 (got 0)"),
    ("training", {"epochs": 2.5}, "training.epochs: must be an integer >= 1 (got 2.5)"),
    ("resources", {"use_gpu": "yes please"}, "resources.use_gpu: must be true or false (got 'yes please')"),
    ("resources", {"num_workers": True}, "resources.num_workers: must be an integer >= 1 (got true)"),
    ("training", [1, 2], "training: must be a mapping with fields epochs, batch_size"),
])
def test_value_errors(section, value, expected):
    assert f"specs/train.yaml: {expected}" in spec_error(with_changes(MINIMAL_TRAIN, **{section: value}))


def test_empty_section_suggests_deleting_it():
    message = spec_error(with_changes(MINIMAL_TRAIN, resources=None))
    assert message.endswith("(got null); delete the line to use the default")


def test_unknown_kind_suggests_and_lists():
    message = spec_error(with_changes(MINIMAL_TRAIN, kind="trian"))
    assert message == "specs/train.yaml: kind: unknown kind 'trian'; did you mean 'train'? valid kinds: generate, score, stylize, train"


def test_missing_kind():
    data = dict(MINIMAL_TRAIN)
    del data["kind"]
    assert spec_error(data).startswith("specs/train.yaml: kind: required field is missing")


def test_unknown_task_suggests_a_registered_one():
    message = spec_error(with_changes(MINIMAL_TRAIN, task="image-clasifier"))
    assert message.startswith(
        "specs/train.yaml: task: unknown task 'image-clasifier'; did you mean 'image-classifier'?")


def test_unknown_architecture_suggests():
    message = spec_error(with_changes(MINIMAL_TRAIN, model={"architecture": "cifar-cnn"}))
    assert message == ("specs/train.yaml: model.architecture: unknown architecture 'cifar-cnn'; "
                       "did you mean 'cifar10-cnn'? valid architectures: binary-cnn, cifar10-cnn, mfcc-lstm, dcgan, adain")


@pytest.mark.parametrize("shape, expected", [
    ([32, 32, 4], "channels must be 1 (grayscale) or 3 (RGB) (got 4)"),
    ([4, 32, 3], "height and width must be between 8 and 1024 (got [4, 32, 3])"),
    ([32, 32], "must be [height, width, channels], three integers"),
])
def test_input_shape_errors(shape, expected):
    model = {"architecture": "cifar10-cnn", "input_shape": shape}
    assert f"specs/train.yaml: model.input_shape: {expected}" in spec_error(with_changes(MINIMAL_TRAIN, model=model))


def test_bad_name_suggests_a_valid_one():
    message = spec_error(with_changes(MINIMAL_TRAIN, name="My Job"))
    assert message.startswith("specs/train.yaml: name: must be 1-63 lowercase letters")
    assert message.endswith("(got 'My Job'); try 'my-job'")


def test_unsupported_uri_scheme():
    message = spec_error(with_changes(MINIMAL_SCORE, output="http://example.com/scores/"), "specs/score.yaml")
    assert message.startswith("specs/score.yaml: output: unsupported URI scheme 'http'")
    assert message.endswith("; use s3://bucket/prefix/ or a local path")


def test_s3_uri_without_bucket():
    message = spec_error(with_changes(MINIMAL_TRAIN, data={"train": "s3:///cifar10/"}))
    assert message == ("specs/train.yaml: data.train: 's3:///cifar10/' has no bucket; "
                       "use s3://bucket/prefix/ or a local path")


def test_local_paths_are_valid_uris():
    spec = parse_spec(with_changes(MINIMAL_SCORE, input="./images", output="file:///tmp/scores/"))
    assert (spec.input, spec.output) == ("./images", "file:///tmp/scores/")


def test_missing_required_field_says_what_it_is():
    data = dict(MINIMAL_SCORE)
    del data["input"]
    message = spec_error(data, "specs/score.yaml")
    assert message == ("specs/score.yaml: input: required field is missing "
                       "(the URI of the objects to score, e.g. s3://archive/images/)")


@pytest.mark.parametrize("version", [2, "1", True, None])
def test_only_version_1(version):
    message = spec_error(with_changes(MINIMAL_TRAIN, version=version))
    assert message == 'specs/train.yaml: version: only version 1 exists; add "version: 1"'


def test_missing_version():
    data = dict(MINIMAL_TRAIN)
    del data["version"]
    assert 'version: required field is missing (the spec format version; add "version: 1")' in spec_error(data)


def test_several_problems_one_per_line():
    data = with_changes(MINIMAL_TRAIN, training={"epochs": 0, "batch_size": "big"}, name="Bad Name")
    lines = spec_error(data).splitlines()
    assert len(lines) == 3
    assert all(line.startswith("specs/train.yaml: ") for line in lines)
    assert [line.split(": ")[1] for line in lines] == ["name", "training.epochs", "training.batch_size"]
