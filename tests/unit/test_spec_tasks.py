"""Specs of each task and kind: media sections, GAN and style-transfer training, generate and stylize,
and incremental and mixed-media score specs."""

from __future__ import annotations

import pytest

from jobs.errors import SpecError
from jobs.spec.load import parse_spec
from support.spec_cases import MINIMAL_SCORE, spec_error, with_changes


# --- the tasks' own sections and kinds ---------------------------------------------------------

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
