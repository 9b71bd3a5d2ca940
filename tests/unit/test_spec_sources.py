"""Where a spec comes from: its file and YAML, the --set overrides on top, and credentials in either
(refused, never echoed)."""

from __future__ import annotations

import copy

import pytest

from jobs.errors import SpecError
from jobs.spec.load import load_spec
from support.spec_cases import MINIMAL_TRAIN, spec_error, with_changes


# --- files and YAML ---------------------------------------------------------------------------------

def test_missing_file(write_spec):
    write_spec(MINIMAL_TRAIN)  # just to chdir
    with pytest.raises(SpecError, match=r"^specs/nope\.yaml: no such file; check the path"):
        load_spec("specs/nope.yaml")


def test_top_level_must_be_a_mapping(write_spec):
    with pytest.raises(SpecError, match=r"^specs/train\.yaml: the top level must be a mapping .*\(got a list\)$"):
        load_spec(write_spec("- version: 1\n"))


def test_empty_file(write_spec):
    with pytest.raises(SpecError, match=r'^specs/train\.yaml: the file is empty; start it with "version: 1"'):
        load_spec(write_spec(""))


def test_yaml_syntax_error_has_line_and_column(write_spec):
    with pytest.raises(SpecError) as info:
        load_spec(write_spec("version: 1\nkind: train\nname: a: b\n"))
    assert info.value.message == ("specs/train.yaml: line 3, column 8: invalid YAML: "
                                  "mapping values are not allowed here; fix the syntax there")


def test_duplicate_keys_are_an_error(write_spec):
    with pytest.raises(SpecError, match=r"^specs/train\.yaml: line 3, column 1: duplicate key 'kind'; keep only one"):
        load_spec(write_spec("version: 1\nkind: train\nkind: score\n"))


def test_error_from_a_file_names_the_file(write_spec):
    path = write_spec(with_changes(MINIMAL_TRAIN, training={"epoch": 3}))
    with pytest.raises(SpecError, match=r"^specs/train\.yaml: training\.epoch: unknown field; did you mean 'epochs'\?$"):
        load_spec(path)

# --- credentials ------------------------------------------------------------------------------------

def test_uri_with_credentials_is_rejected_without_echo():
    data = with_changes(MINIMAL_TRAIN, data={"train": "s3://AKIAEXAMPLE:wJalrSECRET@media/cifar10/"})
    message = spec_error(data)
    assert message.startswith("specs/train.yaml: data.train: credentials do not belong in a URI")
    assert "AWS_ACCESS_KEY_ID" in message and "AWS config" in message
    assert "wJalrSECRET" not in message and "AKIAEXAMPLE" not in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("where, key", [
    ((), "aws_secret_access_key"), (("data",), "access_key"), (("resources",), "password"),
    (("training",), "session_token"),
])
def test_credential_keys_are_rejected_without_echo(where, key):
    data = copy.deepcopy(MINIMAL_TRAIN)
    node = data
    for part in where:
        node = node.setdefault(part, {})
    node[key] = "hunter2-SECRET"
    message = spec_error(data)
    path = ".".join(where + (key,))
    assert message.startswith(f"specs/train.yaml: {path}: credentials do not belong in a spec; remove this key")
    assert "environment" in message and "hunter2-SECRET" not in message
    assert len(message.splitlines()) == 1  # not also reported as an unknown field


def test_credentials_in_an_override_are_not_echoed():
    message = spec_error(MINIMAL_TRAIN, overrides=["data.train=s3://AKIAEXAMPLE:topsecret@media/x/"])
    assert "data.train: credentials do not belong in a URI" in message
    assert "topsecret" not in message
    message = spec_error(MINIMAL_TRAIN, overrides=["..secret=topsecret"])
    assert "override '..secret=***' is not key.path=value" in message and "topsecret" not in message

# --- overrides --------------------------------------------------------------------------------------

def test_overrides_apply_and_create_missing_mappings(write_spec):
    path = write_spec(MINIMAL_TRAIN)
    spec = load_spec(path, ["training.epochs=3", "resources={num_workers: 1, use_gpu: true}", "name=other"])
    assert (spec.training.epochs, spec.resources.num_workers, spec.resources.use_gpu, spec.name) == (
        3, 1, True, "other")
    assert spec.training.batch_size == 64


def test_override_value_is_validated_with_its_path():
    message = spec_error(MINIMAL_TRAIN, overrides=["training.epochs=ten"])
    assert message == ("specs/train.yaml: training.epochs: must be an integer >= 1 (got 'ten') "
                       "(set by override training.epochs)")


def test_override_of_unknown_key_suggests():
    message = spec_error(MINIMAL_TRAIN, overrides=["training.epoch=3"])
    assert message.startswith("specs/train.yaml: training.epoch: unknown field; did you mean 'epochs'?")


@pytest.mark.parametrize("override", ["training.epochs", "=3", "training..epochs=3"])
def test_malformed_override_is_named(override):
    message = spec_error(MINIMAL_TRAIN, overrides=[override])
    assert message == (f"specs/train.yaml: override {override!r} is not key.path=value; "
                       "write it like training.epochs=3")


def test_override_through_a_scalar_is_an_error():
    message = spec_error(MINIMAL_TRAIN, overrides=["output.path=x"])
    assert message == ("specs/train.yaml: override 'output.path=x': output is 's3://models/cifar10-cnn/', "
                       "not a mapping; set it as a whole instead")


def test_override_with_invalid_yaml_value():
    message = spec_error(MINIMAL_TRAIN, overrides=["model.input_shape=[32, 32"])
    assert message.startswith("specs/train.yaml: override 'model.input_shape=[32, 32': the value is not valid YAML")


def test_non_string_key_is_reported_on_its_mapping():
    message = spec_error(with_changes(MINIMAL_TRAIN, training={7: 1}))
    assert message == "specs/train.yaml: training: field names must be strings (got 7)"
