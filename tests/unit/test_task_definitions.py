"""Task definitions: each task states what it is once, and the contracts the job layers call."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.errors import SpecError
from jobs.spec.load import parse_spec
from tasks.definition import Architecture
from tasks.protocols import Classifier, Decoder, FittedFeatures, Trainable
from tasks.registry import (add_task_module, all_architectures, classifier_for_media, definition, definitions,
                            field_choices, get_task, media_names, remove_task_module, task_names)


def test_every_registered_task_has_a_definition_that_names_it_and_keeps_its_contracts():
    assert [d.name for d in definitions()] == ["image-classifier", "video-classifier", "audio-classifier", "gan",
                                               "style-transfer"]
    for known in definitions():
        assert get_task(known.name) is known.task_class
        task = known.task_class()
        assert isinstance(task, Decoder) and isinstance(task, Trainable), known.name
        assert isinstance(task, Classifier) or not known.is_classifier, known.name
        assert known.architectures and known.job_kind in ("score", "generate", "stylize")
        if known.is_classifier:
            assert classifier_for_media(known.modality) is known
    assert isinstance(get_task("audio-classifier")(), FittedFeatures)
    assert media_names() == ["image", "video", "audio"]


def test_the_spec_takes_the_encoders_the_style_task_defines():
    from tasks.style_encoders import ENCODER_DOWNSAMPLING

    assert field_choices("encoder") == list(ENCODER_DOWNSAMPLING)  # defined once, by the task
    base = {"version": 1, "kind": "train", "name": "st", "task": "style-transfer", "output": "s3://b/o/",
            "data": {"train": "s3://b/c/", "style": "s3://b/s/"}}
    for encoder in ENCODER_DOWNSAMPLING:
        assert parse_spec({**base, "model": {"architecture": "adain", "encoder": encoder}}).model.encoder == encoder
    with pytest.raises(SpecError, match="unknown encoder 'resnet'; valid encoders: vgg19, tiny"):
        parse_spec({**base, "model": {"architecture": "adain", "encoder": "resnet"}})


def test_each_architecture_defaults_pass_its_own_check_and_a_bad_size_is_named():
    for name in all_architectures():
        for known in definitions():
            for architecture in known.architectures:
                if architecture.check is not None:
                    assert architecture.check(architecture.fields) is None, (known.name, name)
    dcgan = definition("gan").architecture("dcgan")
    assert "image_shape: height and width must be multiples of 4" in dcgan.check({"image_shape": (30, 28, 1)})
    adain = definition("style-transfer").architecture("adain")
    assert "image_size: must be a multiple of 4 for the tiny encoder" in adain.check({"image_size": 30,
                                                                                     "encoder": "tiny"})


def test_a_sigmoid_head_gives_two_class_probabilities_and_a_softmax_its_own():
    binary = definition("image-classifier").architecture("binary-cnn")
    assert binary.outputs == "sigmoid" and binary.classes == 2
    assert np.allclose(binary.class_probabilities([[0.8], [0.1]]), [[0.2, 0.8], [0.9, 0.1]])
    softmax = Architecture("any")
    assert np.allclose(softmax.class_probabilities([[0.3, 0.7]]), [[0.3, 0.7]])
    with pytest.raises(KeyError, match="task gan trains dcgan, not cifar10-cnn"):
        definition("gan").architecture("cifar10-cnn")


def test_a_task_added_from_elsewhere_is_known_while_registered():
    tone = {"version": 1, "kind": "train", "name": "t", "task": "tone-classifier",
            "model": {"architecture": "tone-dense"}, "data": {"train": "s3://b/t/"}, "output": "s3://b/o/"}
    with pytest.raises(SpecError, match="unknown task 'tone-classifier'"):
        parse_spec(tone)
    add_task_module("tone-classifier", "tests.support.tone_task")
    try:
        assert "tone-classifier" in task_names() and "tone-dense" in all_architectures()
        assert parse_spec(tone).model.architecture == "tone-dense"
        assert classifier_for_media("tone").name == "tone-classifier"
    finally:
        remove_task_module("tone-classifier")
    assert "tone-classifier" not in task_names() and "tone-dense" not in all_architectures()
    # A worker that unpickled a task of the module still finds its definition.
    assert definition("tone-classifier").modality == "tone"
