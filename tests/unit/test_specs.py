"""Unit tests for job specs: defaults, overrides, hashing and the wording of every error."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pydantic
import pytest
import yaml

from jobs.errors import SpecError
from jobs.spec.load import (ImageModelConfig, ScoreSpec, TrainSpec, load_spec, parse_spec, spec_hash,
                        spec_to_dict)
from support.paths import EXAMPLES


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


@pytest.fixture
def write_spec(tmp_path, monkeypatch):
    """Write a spec under ./specs/ and return its relative name, as a user would type it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()

    def write(data, name: str = "train.yaml") -> str:
        path = Path("specs") / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return str(path)

    return write


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


# --- unknown fields, kinds, tasks, values -----------------------------------------------------------

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


def test_media_sections_belong_to_their_task():
    base = {"version": 1, "kind": "train", "name": "v", "output": "s3://m/v/", "data": {"train": "s3://m/t/"}}
    video = parse_spec({**base, "task": "video-classifier", "model": {"architecture": "cifar10-cnn"}})
    assert video.frames.every_seconds == 1.0 and video.frames.max_frames == 300  # defaults filled in
    audio = parse_spec({**base, "task": "audio-classifier", "model": {"architecture": "mfcc-lstm"},
                        "audio": {"sample_rate": 8000}})
    assert audio.audio.sample_rate == 8000 and audio.audio.n_mfcc == 13 and audio.model.input_shape is None
    with pytest.raises(SpecError, match=r"spec>: frames: frames applies to task video-classifier only"):
        parse_spec({**base, "task": "image-classifier", "model": {"architecture": "cifar10-cnn"},
                    "frames": {"every_seconds": 2}})
    with pytest.raises(SpecError, match=r"model: architecture: task audio-classifier trains mfcc-lstm, not cifar10-cnn"):
        parse_spec({**base, "task": "audio-classifier", "model": {"architecture": "cifar10-cnn"}})
    with pytest.raises(SpecError, match=r"input_shape: mfcc-lstm takes its input shape from the `audio` section"):
        parse_spec({**base, "task": "audio-classifier", "model": {"architecture": "mfcc-lstm", "input_shape": [8, 8, 1]}})


GAN_TRAIN = {"version": 1, "kind": "train", "name": "g", "task": "gan", "output": "s3://m/g/",
             "model": {"architecture": "dcgan"}, "data": {"train": "s3://m/t/"}}
STYLE_TRAIN = {"version": 1, "kind": "train", "name": "s", "task": "style-transfer", "output": "s3://m/s/",
               "model": {"architecture": "adain"}, "data": {"train": "s3://m/c/", "style": "s3://m/st/"}}


def test_gan_and_style_transfer_train_specs_fill_their_model_defaults():
    gan = parse_spec(GAN_TRAIN)
    assert (gan.model.image_shape, gan.model.latent_dim, gan.model.input_shape) == ((28, 28, 1), 100, None)
    style = parse_spec(STYLE_TRAIN)
    assert (style.model.encoder, style.model.image_size, style.data.style) == ("vgg19", 256, "s3://m/st/")
    assert parse_spec(with_changes(GAN_TRAIN, model={"architecture": "dcgan", "image_shape": [32, 32, 3]})
                      ).model.image_shape == (32, 32, 3)


@pytest.mark.parametrize("changes, message", [
    ({"model": {"architecture": "dcgan", "input_shape": [28, 28, 1]}},
     "model: input_shape: dcgan sets the image size with image_shape; dcgan takes image_shape, latent_dim; "
     "delete input_shape"),
    ({"model": {"architecture": "dcgan", "image_shape": [30, 30, 1]}},
     "model: image_shape: height and width must be multiples of 4"),
    ({"model": {"architecture": "cifar10-cnn"}}, "model: architecture: task gan trains dcgan, not cifar10-cnn"),
    ({"data": {"train": "s3://m/t/", "validation": "s3://m/v/"}},
     "data: validation: applies to classifier tasks only (this spec's task is gan); delete it"),
    ({"data": {"train": "s3://m/t/", "style": "s3://m/v/"}},
     "data: style: applies to task style-transfer only (this spec's task is gan); delete it"),
])
def test_gan_train_spec_problems_name_the_field(changes, message):
    assert message in spec_error(with_changes(GAN_TRAIN, **changes))


def test_style_train_spec_needs_style_images_and_a_size_the_encoder_can_take():
    assert "data: style: style-transfer trains on content images (train) and style images (style); add style:" in \
        spec_error(with_changes(STYLE_TRAIN, data={"train": "s3://m/c/"}))
    assert "model: image_size: must be a multiple of 8 for the vgg19 encoder (got 60); e.g. 56" in \
        spec_error(with_changes(STYLE_TRAIN, model={"architecture": "adain", "image_size": 60}))
    assert parse_spec(with_changes(STYLE_TRAIN, model={"architecture": "adain", "encoder": "tiny", "image_size": 60})
                      ).model.image_size == 60


def test_score_refuses_generative_tasks_and_names_their_kind():
    score = {"version": 1, "kind": "score", "name": "s", "model": "s3://m/g/", "input": "s3://a/", "output": "s3://o/"}
    assert "task: a score job classifies (image-classifier, video-classifier, audio-classifier); kind: generate" \
        in spec_error({**score, "task": "gan"})
    assert "kind: stylize restyles images" in spec_error({**score, "task": "style-transfer"})


def test_generate_and_stylize_specs():
    generate = parse_spec({"version": 1, "kind": "generate", "name": "g", "model": "s3://m/g/", "count": 10,
                           "output": "s3://o/"})
    assert (generate.task, generate.seed, generate.batch_size, generate.grid_size) == ("gan", 0, 256, 64)
    assert "count: required field is missing (how many images to generate" in spec_error(
        {"version": 1, "kind": "generate", "name": "g", "model": "s3://m/g/", "output": "s3://o/"})
    stylize = {"version": 1, "kind": "stylize", "name": "s", "input": "s3://in/", "styles": ["s3://st/a.jpg"],
               "output": "s3://o/"}
    handle = "https://tfhub.dev/google/magenta/arbitrary-image-stylization-v1-256/2"
    assert parse_spec({**stylize, "model": handle}).model == handle
    assert parse_spec({**stylize, "model": "/models/adain"}).image_format == "jpeg"
    assert "styles: must list 1 to 64 style image URIs (got 0)" in spec_error({**stylize, "model": handle,
                                                                              "styles": []})
    assert "model: credentials do not belong in a URI" in spec_error({**stylize, "model": "https://u:pw@hub/x"})
    assert "pw" not in spec_error({**stylize, "model": "https://u:pw@hub/x"})
    assert "unknown kind 'stylise'; did you mean 'stylize'?" in spec_error({**stylize, "kind": "stylise"})



def test_generate_specs_take_a_quality_section():
    generate = {"version": 1, "kind": "generate", "name": "g", "model": "s3://m/g/", "count": 10, "output": "s3://o/"}
    assert parse_spec(generate).quality is None
    quality = parse_spec({**generate, "quality": {"classifier": "s3://m/cnn/@cnn-1a2b"}}).quality
    assert (quality.classifier, quality.confident, quality.min_class_share) == ("s3://m/cnn/@cnn-1a2b", 0.9, 0.03)
    assert parse_spec(generate, overrides=["quality={classifier: s3://m/cnn/, confident: 0.8}"]).quality.confident == 0.8
    assert "g.yaml: quality.classifier: required field is missing (the output URI of an image-classifier train job" \
        in spec_error({**generate, "quality": {"confident": 0.9}}, "g.yaml")
    assert "quality.classifer: unknown field; did you mean 'classifier'?" in spec_error(
        {**generate, "quality": {"classifer": "s3://m/cnn/"}})
    assert "quality.confident: must be a number > 0 and <= 1 (got 1.5)" in spec_error(
        {**generate, "quality": {"classifier": "s3://m/cnn/", "confident": 1.5}})
    assert "quality.min_class_share: must be a number between 0 and 1 (got -0.1)" in spec_error(
        {**generate, "quality": {"classifier": "s3://m/cnn/", "min_class_share": -0.1}})
    assert "quality.classifier: credentials do not belong in a URI" in spec_error(
        {**generate, "quality": {"classifier": "s3://key:hunter2@m/cnn/"}})
    assert "hunter2" not in spec_error({**generate, "quality": {"classifier": "s3://key:hunter2@m/cnn/"}})

# --- incremental and mixed-media score specs ------------------------------------------------------

NIGHTLY = with_changes(MINIMAL_SCORE, incremental=True)
ROUTED = {k: v for k, v in NIGHTLY.items() if k not in ("task", "model")} | {
    "routes": [{"media": "image", "model": "s3://models/cnn/"}, {"media": "video", "model": "s3://models/video/"}]}


def test_the_error_budget_defaults_to_five_percent_for_incremental_jobs_only():
    assert parse_spec(MINIMAL_SCORE).error_budget is None
    assert parse_spec(NIGHTLY).error_budget == 0.05
    assert parse_spec(with_changes(NIGHTLY, max_error_rate=0)).error_budget == 0
    assert parse_spec(with_changes(MINIMAL_SCORE, max_error_rate=0.2)).error_budget == 0.2
    assert "max_error_rate" in spec_error(with_changes(NIGHTLY, max_error_rate=1.5), "specs/s.yaml")


def test_routes_resolve_tasks_names_and_default_extensions():
    spec = parse_spec(ROUTED)
    assert [(r.route_name, r.task) for r in spec.routes] == [("image", "image-classifier"),
                                                             ("video", "video-classifier")]


@pytest.mark.parametrize("change, expected", [
    ({"incremental": False}, "routes: a mixed-media archive is scored incrementally; add incremental: true"),
    ({"routes": []}, "routes: must list at least one route"),
    ({"routes": [{"media": "image", "model": "s3://m/a/"}, {"media": "image", "model": "s3://m/b/"}]},
     "route names must differ (image used twice); give each route a name"),
    ({"routes": [{"media": "image", "model": "s3://m/a/", "name": "photos", "extensions": [".jpg"]},
                 {"media": "image", "model": "s3://m/b/", "name": "scans", "extensions": [".JPG", ".png"]}]},
     ".JPG is taken by routes photos and scans; list it under one route's extensions"),
    ({"routes": [{"media": "audio", "model": "s3://m/a/", "frames": {"every_seconds": 1}}]},
     "frames applies to media: video only (this route's media is audio); delete it"),
    ({"routes": [{"media": "vidoe", "model": "s3://m/a/"}]},
     "routes[0].media: unknown media 'vidoe'; did you mean 'video'? valid media: image, video, audio"),
])
def test_bad_routes_are_refused_naming_the_field_and_the_fix(change, expected):
    assert expected in spec_error(with_changes(ROUTED, **change), "specs/nightly.yaml")


def test_annotated_videos_are_not_written_by_incremental_runs():
    video = with_changes(NIGHTLY, task="video-classifier", annotate=True)
    assert "annotate: annotated videos are not written by incremental runs" in spec_error(video, "specs/v.yaml")
