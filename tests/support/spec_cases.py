"""What the spec tests share (tests/unit/test_spec*.py): minimal valid specs, a copy with sections
changed, and the message of the SpecError a document raises."""

from __future__ import annotations

import copy

import pytest

from jobs.errors import SpecError
from jobs.spec.load import parse_spec

MINIMAL_TRAIN = {
    "version": 1,
    "kind": "train",
    "name": "cifar10-cnn",
    "task": "image-classifier",
    "model": {"architecture": "cifar10-cnn"},
    "data": {"train": "s3://media/cifar10/train/"},
    "output": "s3://models/cifar10-cnn/",
}
MINIMAL_SCORE = {
    "version": 1,
    "kind": "score",
    "name": "score-images",
    "task": "image-classifier",
    "model": "s3://models/cifar10-cnn/",
    "input": "s3://archive/images/",
    "output": "s3://scores/images/",
}


def with_changes(base: dict, **sections) -> dict:
    data = copy.deepcopy(base)
    data.update(sections)
    return data


def spec_error(data, source: str = "specs/train.yaml", overrides=()) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, source, overrides)
    message = info.value.message
    assert "Input should" not in message and "pydantic" not in message and "Traceback" not in message
    return message
