"""Job specs: the strict YAML files that describe one train, score, generate or stylize job.

`load_spec` reads a file, applies `key.path=value` overrides and validates once; every
problem becomes one line of a `SpecError` that names the file, the field path and the fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from jobs._spec_errors import (_USERINFO, _describe_error, _Loc, _Problem, _show, _spec_error, _starts_with,
                               _unknown_choice)
from jobs._spec_yaml import _SECRET_KEY, _apply_overrides, _plain, _read_yaml
from jobs.errors import SpecError, StorageError
from jobs.storage import parse_uri
from jobs.uri_policy import scheme_problem
from tasks.registry import task_names

__all__ = [
    "DEFAULT_INPUT_SHAPES", "GenerateSpec", "ImageModelConfig", "ModelConfig", "ScoreResources", "ScoreSpec", "Spec",
    "StylizeSpec", "TrainData", "TrainResources", "TrainSpec", "TrainingConfig", "load_spec", "parse_spec",
    "spec_hash", "spec_to_dict",
]

DEFAULT_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {"binary-cnn": (64, 64, 3), "cifar10-cnn": (32, 32, 3)}
# Which architectures each task can train; the first is what a spec gets when it names none.
TASK_ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "image-classifier": ("cifar10-cnn", "binary-cnn"),
    "video-classifier": ("cifar10-cnn", "binary-cnn"),
    "audio-classifier": ("mfcc-lstm",),
    "gan": ("dcgan",),
    "style-transfer": ("adain",),
}
# The tasks a score job classifies with; the others have their own job kinds.
CLASSIFIER_TASKS = ("image-classifier", "video-classifier", "audio-classifier")
# Model fields that only some architectures take (the rest are refused, so a typo'd spec
# cannot silently train something else than its author meant).
_ARCHITECTURE_FIELDS = {
    "cifar10-cnn": ("input_shape",), "binary-cnn": ("input_shape",), "mfcc-lstm": (),
    "dcgan": ("image_shape", "latent_dim"), "adain": ("image_size", "encoder"),
}

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_CREDENTIALS_FIX = ("provide them through the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) "
                    "or the AWS config (~/.aws/credentials, AWS_PROFILE)")
_SECRET_KEY_PROBLEM = f"credentials do not belong in a spec; remove this key and {_CREDENTIALS_FIX}"
_SECRET_URI_PROBLEM = f"credentials do not belong in a URI; remove the 'user:secret@' part and {_CREDENTIALS_FIX}"


def _fail(message: str) -> PydanticCustomError:
    # The "spec" error type carries a finished message; _describe_error passes it through.
    return PydanticCustomError("spec", "{message}", {"message": message})


def _check_version(value: Any) -> Any:
    if value != 1 or isinstance(value, bool) or not isinstance(value, int):
        raise _fail('only version 1 exists; add "version: 1"')
    return value


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        fix = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:63]
        hint = f"; try {fix!r}" if _NAME.fullmatch(fix) else ""
        raise _fail("must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit "
                    f"(got {_show(name)}){hint}")
    return name


def _check_task(name: str) -> str:
    if name not in task_names():
        raise _fail(_unknown_choice("task", name, task_names()))
    return name


def _check_model_source(value: str) -> str:
    # A stylization module: a TF Hub / Kaggle handle (https://...), an s3:// prefix or a local dir.
    if value.startswith(("https://", "http://")):
        if _USERINFO.search(value):
            raise _fail(_SECRET_URI_PROBLEM)
        if problem := scheme_problem(value):
            raise _fail(problem)
        return value
    return _check_uri(value)


def _check_uri(uri: str) -> str:
    if _USERINFO.search(uri):
        raise _fail(_SECRET_URI_PROBLEM)
    if uri != uri.strip():
        raise _fail(f"has leading or trailing spaces (got {uri!r}); remove them")
    try:
        parse_uri(uri)
    except StorageError as exc:
        reason = exc.message.split("; use ")[0]
        raise _fail(f"{reason}; use s3://bucket/prefix/ or a local path") from None
    except ValueError:  # urlparse: an unclosed '[' reads as a broken IPv6 host
        raise _fail(f"{_show(uri)} is not a valid URI; use s3://bucket/prefix/ or a local path") from None
    if problem := scheme_problem(uri):
        raise _fail(problem)
    return uri


def _check_input_shape(value: Any) -> tuple[int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise _fail(f"must be [height, width, channels], three integers, e.g. [32, 32, 3] (got {_show(value)})")
    height, width, channels = value
    if not (8 <= height <= 1024 and 8 <= width <= 1024):
        raise _fail(f"height and width must be between 8 and 1024 (got {list(value)})")
    if channels not in (1, 3):
        raise _fail(f"channels must be 1 (grayscale) or 3 (RGB) (got {channels})")
    return (height, width, channels)


_Version = Annotated[Literal[1], BeforeValidator(_check_version)]
_JobName = Annotated[str, Field(strict=True), AfterValidator(_check_name)]
_TaskName = Annotated[str, Field(strict=True), AfterValidator(_check_task)]
_Uri = Annotated[str, Field(strict=True), AfterValidator(_check_uri)]
_InputShape = Annotated[tuple[int, int, int], BeforeValidator(_check_input_shape)]
_Count = Annotated[int, Field(strict=True, ge=1)]
_BatchSize = Annotated[int, Field(strict=True, ge=1, le=65536)]
_Flag = Annotated[bool, Field(strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """The network a train job builds. `input_shape` (classifiers) defaults by architecture;
    `image_shape` and `latent_dim` are the DCGAN's, `image_size` and `encoder` AdaIN's."""

    architecture: Literal["binary-cnn", "cifar10-cnn", "mfcc-lstm", "dcgan", "adain"] = Field(
        description="the network to build: cifar10-cnn or binary-cnn (images, video frames), mfcc-lstm (audio), "
                    "dcgan (gan), adain (style-transfer)")
    input_shape: _InputShape | None = Field(None, description="[height, width, channels] of the model input")
    image_shape: _InputShape | None = Field(None, description="[height, width, channels] of the generated images")
    latent_dim: Annotated[int, Field(strict=True, ge=1, le=4096)] | None = None
    image_size: Annotated[int, Field(strict=True, ge=8, le=1024)] | None = None
    encoder: Literal["vgg19", "tiny"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _fields_of_the_architecture(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        architecture = data.get("architecture")
        if not isinstance(architecture, str) or architecture not in _ARCHITECTURE_FIELDS:
            # Reported on its own field; a default shape keeps a missing input_shape quiet.
            return {**data, "input_shape": data.get("input_shape", DEFAULT_INPUT_SHAPES["cifar10-cnn"])}
        allowed = _ARCHITECTURE_FIELDS[architecture]
        for name in ("input_shape", "image_shape", "latent_dim", "image_size", "encoder"):
            if data.get(name) is not None and name not in allowed:  # null: as written back by spec_to_dict
                fix = {"mfcc-lstm": "mfcc-lstm takes its input shape from the `audio` section",
                       "dcgan": "dcgan sets the image size with image_shape"}.get(architecture, "")
                fields = f"; {architecture} takes {', '.join(allowed)}" if allowed else ""
                raise _fail(f"{name}: {fix or f'{architecture} has no {name}'}{fields}; delete {name}")
        defaults = {"input_shape": DEFAULT_INPUT_SHAPES.get(architecture), "image_shape": (28, 28, 1),
                    "latent_dim": 100, "image_size": 256, "encoder": "vgg19"}
        return {**data, **{name: defaults[name] for name in allowed if data.get(name) is None}}

    @model_validator(mode="after")
    def _sizes_fit_the_network(self) -> "ModelConfig":
        if self.image_shape is not None and (self.image_shape[0] % 4 or self.image_shape[1] % 4):
            raise _fail(f"image_shape: height and width must be multiples of 4 (the generator upsamples twice "
                        f"by 2), got {list(self.image_shape)}; e.g. [28, 28, 1] or [32, 32, 3]")
        if self.image_size is not None and self.encoder is not None:
            factor = {"vgg19": 8, "tiny": 4}[self.encoder]
            if self.image_size % factor:
                raise _fail(f"image_size: must be a multiple of {factor} for the {self.encoder} encoder "
                            f"(got {self.image_size}); e.g. {self.image_size // factor * factor or factor}")
        return self


ImageModelConfig = ModelConfig  # the name before GAN and style-transfer models existed


class FramesConfig(_Strict):
    """How video frames are sampled: every `every_n_frames` frames if set, else every `every_seconds`."""

    every_seconds: Annotated[float, Field(strict=False, gt=0, allow_inf_nan=False)] | None = 1.0
    every_n_frames: _Count | None = None
    max_frames: _Count = 300


class AudioConfig(_Strict):
    """How audio is turned into model input: resampled mono, cut into windows, MFCCs per window."""

    sample_rate: Annotated[int, Field(strict=True, ge=4000, le=96000)] = 16000
    n_mfcc: Annotated[int, Field(strict=True, ge=1, le=128)] = 13
    window_seconds: Annotated[float, Field(strict=False, gt=0, le=60, allow_inf_nan=False)] = 1.0

    @model_validator(mode="after")
    def _window_holds_an_fft_frame(self) -> "AudioConfig":
        # The MFCC frame is 25 ms at 16 kHz (n_fft 400); a window must hold one.
        if self.window_seconds * self.sample_rate < 400:
            raise _fail(f"window_seconds: {self.window_seconds} s at {self.sample_rate} Hz is shorter than one "
                        f"MFCC frame (400 samples); use at least {400 / self.sample_rate:.3f}")
        return self


SECTION_TASKS = {"frames": "video-classifier", "annotate": "video-classifier", "audio": "audio-classifier"}
_STYLE_TRAINING_IMAGES = 4096  # style images travel to every worker: bounded by design


def _only_for(task_name: str | None, wanted: str, section: str) -> None:
    if task_name is not None and task_name != wanted:
        raise _fail(f"{section} applies to task {wanted} only (this spec's task is {task_name}); delete it")


class TrainData(_Strict):
    train: _Uri = Field(description="the URI of the training images, e.g. s3://media/cifar10/train/")
    validation: _Uri | None = Field(None, description="the URI of the validation images (classifiers)")
    style: _Uri | None = Field(None, description="the URI of the style images (style-transfer), "
                                                 "e.g. s3://media/styles/")


class TrainingConfig(_Strict):
    epochs: _Count = 10
    batch_size: _BatchSize = 64
    learning_rate: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] = 0.001
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)] = 0
    max_failures: Annotated[int, Field(strict=True, ge=0)] = 2


_GpuShare = Annotated[float, Field(strict=False, ge=0, le=64, allow_inf_nan=False)]


def _gpu_share(value: float | None, use_gpu: bool, field: str) -> float:
    """GPUs per worker or actor: 1 by default with use_gpu, else 0; a contradiction is refused."""
    if value and not use_gpu:
        raise _fail(f"{field}: set use_gpu: true as well, or delete {field}")
    if use_gpu and value == 0:
        raise _fail(f"{field}: use_gpu is true but {field} is 0; set it above 0 (e.g. 1) or use_gpu: false")
    return float(value if value is not None else (1 if use_gpu else 0))


class TrainResources(_Strict):
    """Ray Train's ScalingConfig (see jobs.resources): one worker per MWMS replica."""

    num_workers: _Count = 2
    use_gpu: _Flag = False
    cpus_per_worker: _Count = 1
    gpus_per_worker: _GpuShare | None = Field(None, description="GPUs per worker with use_gpu (default 1)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how workers are placed on nodes: PACK (fewest nodes), SPREAD, STRICT_SPREAD "
                            "(one worker per node), STRICT_PACK (one node)")

    @model_validator(mode="after")
    def _gpus_need_use_gpu(self) -> "TrainResources":
        object.__setattr__(self, "gpus_per_worker", _gpu_share(self.gpus_per_worker, self.use_gpu, "gpus_per_worker"))
        return self


class ScoreResources(_Strict):
    """The model actor pool (see jobs.resources): `concurrency` actors, spread over the nodes."""

    concurrency: _Count = 2
    use_gpu: _Flag = False
    num_gpus: _GpuShare | None = Field(None, description="GPUs per actor with use_gpu (default 1; 0.5 shares one)")
    cpus_per_actor: Annotated[float, Field(strict=False, gt=0, le=256, allow_inf_nan=False)] = 1

    @model_validator(mode="after")
    def _gpus_need_use_gpu(self) -> "ScoreResources":
        object.__setattr__(self, "num_gpus", _gpu_share(self.num_gpus, self.use_gpu, "num_gpus"))
        return self


class TrainSpec(_Strict):
    version: _Version = Field(description='the spec format version; add "version: 1"')
    kind: Literal["train"]
    name: _JobName = Field(description="the job name, e.g. cifar10-cnn")
    task: _TaskName = Field(description="the task to run, e.g. image-classifier")
    model: ModelConfig = Field(description="the network to train, e.g. {architecture: cifar10-cnn}")
    data: TrainData = Field(description="the training data, e.g. {train: s3://media/cifar10/train/}")
    frames: FramesConfig | None = Field(None, description="video frame sampling (video-classifier)")
    audio: AudioConfig | None = Field(None, description="audio features (audio-classifier)")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    resources: TrainResources = Field(default_factory=TrainResources)
    output: _Uri = Field(description="where to write the trained model, e.g. s3://models/cifar10-cnn/")

    @field_validator("model")
    @classmethod
    def _architecture_fits_task(cls, model: ModelConfig, info: ValidationInfo) -> ModelConfig:
        task = info.data.get("task")
        allowed = TASK_ARCHITECTURES.get(task or "", ())
        if allowed and model.architecture not in allowed:
            raise _fail(f"architecture: task {task} trains {' or '.join(allowed)}, not {model.architecture}")
        return model

    @field_validator("frames", "audio")
    @classmethod
    def _section_fits_task(cls, section, info: ValidationInfo):
        if section is not None:
            _only_for(info.data.get("task"), SECTION_TASKS[info.field_name], info.field_name)
        return section

    @field_validator("data")
    @classmethod
    def _data_fits_task(cls, data: TrainData, info: ValidationInfo) -> TrainData:
        task = info.data.get("task")
        if task == "style-transfer" and data.style is None:
            raise _fail("style: style-transfer trains on content images (train) and style images (style); "
                        "add style: s3://bucket/styles/")
        if task is not None and task != "style-transfer" and data.style is not None:
            raise _fail(f"style: applies to task style-transfer only (this spec's task is {task}); delete it")
        if task in ("gan", "style-transfer") and data.validation is not None:
            raise _fail(f"validation: applies to classifier tasks only (this spec's task is {task}); delete it")
        return data

    @model_validator(mode="after")
    def _task_defaults(self) -> "TrainSpec":
        # Fill the media section of the task with its defaults, so the spec hash and the
        # model metadata record what was actually used.
        if self.task == "video-classifier" and self.frames is None:
            object.__setattr__(self, "frames", FramesConfig())
        if self.task == "audio-classifier" and self.audio is None:
            object.__setattr__(self, "audio", AudioConfig())
        return self


MEDIA_TASKS = {"image": "image-classifier", "video": "video-classifier", "audio": "audio-classifier"}
_ErrorRate = Annotated[float, Field(strict=False, ge=0, le=1, allow_inf_nan=False)]
_Extension = Annotated[str, Field(strict=True, pattern=r"^\.[A-Za-z0-9]{1,16}$")]


class _ScoreCommon(_Strict):
    version: _Version = Field(description='the spec format version; add "version: 1"')
    kind: Literal["score"]
    name: _JobName = Field(description="the job name, e.g. score-images")
    input: _Uri = Field(description="the URI of the objects to score, e.g. s3://archive/images/")
    output: _Uri = Field(description="where to write the scores, e.g. s3://scores/images/")
    batch_size: _BatchSize = 256
    top_k: _Count = 3
    incremental: _Flag = Field(False, description="score only new or changed objects, tables partitioned by run date")
    max_error_rate: _ErrorRate | None = Field(
        None, description="the share of scored objects that may fail before the run exits 1 "
                          "(default 0.05 with incremental: true, no limit otherwise)")
    resources: ScoreResources = Field(default_factory=ScoreResources)

    @property
    def error_budget(self) -> float | None:
        return self.max_error_rate if self.max_error_rate is not None or not self.incremental else 0.05


class ScoreSpec(_ScoreCommon):
    task: _TaskName = Field(description="the task to run, e.g. image-classifier")
    model: _Uri = Field(description="the output URI of a train job, e.g. s3://models/cifar10-cnn/")
    frames: FramesConfig | None = Field(None, description="video frame sampling (video-classifier)")
    annotate: _Flag = Field(False, description="write annotated videos and contact sheets (video-classifier)")

    @field_validator("task")
    @classmethod
    def _classifier_task(cls, task: str) -> str:
        if task not in CLASSIFIER_TASKS:
            other = {"gan": "kind: generate samples a trained GAN", "style-transfer": "kind: stylize restyles images"}
            raise _fail(f"a score job classifies ({', '.join(CLASSIFIER_TASKS)}); {other.get(task, '')}".rstrip("; "))
        return task

    @field_validator("frames", "annotate")
    @classmethod
    def _video_only(cls, value, info: ValidationInfo):
        if value:
            _only_for(info.data.get("task"), SECTION_TASKS[info.field_name], info.field_name)
        return value

    @model_validator(mode="after")
    def _no_annotation_in_incremental_runs(self) -> "ScoreSpec":
        if self.annotate and self.incremental:
            raise _fail("annotate: annotated videos are not written by incremental runs; delete annotate or "
                        "incremental")
        return self


class Route(_Strict):
    """One modality of a mixed archive: which objects (by extension), scored by which model."""

    media: Literal["image", "video", "audio"] = Field(description="the kind of media this route scores")
    model: _Uri = Field(description="the output URI of a train job for this media, e.g. s3://models/cifar10-cnn/")
    name: _JobName | None = Field(None, description="the route's name in the tables (default: the media)")
    extensions: list[_Extension] | None = Field(
        None, description="object name suffixes this route takes, e.g. [.jpg, .png] (default: the media's)")
    frames: FramesConfig | None = Field(None, description="video frame sampling (media: video)")

    @property
    def task(self) -> str:
        return MEDIA_TASKS[self.media]

    @property
    def route_name(self) -> str:
        return self.name or self.media

    @model_validator(mode="after")
    def _frames_for_video(self) -> "Route":
        if self.frames is not None and self.media != "video":
            raise _fail(f"frames applies to media: video only (this route's media is {self.media}); delete it")
        return self


class RoutedScoreSpec(_ScoreCommon):
    """A score job over a mixed archive: `routes` send each object to the model for its media."""

    routes: list[Route] = Field(description="one entry per media, e.g. [{media: image, model: s3://models/cnn/}]")

    @field_validator("routes")
    @classmethod
    def _distinct_routes(cls, routes: list[Route]) -> list[Route]:
        from tasks import get_task

        if not routes:
            raise _fail("must list at least one route, e.g. [{media: image, model: s3://models/cnn/}]")
        names = [r.route_name for r in routes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise _fail(f"route names must differ ({', '.join(twice)} used twice); give each route a name")
        claimed: dict[str, str] = {}
        for route in routes:
            for extension in route.extensions or get_task(route.task).suffixes:
                other = claimed.setdefault(extension.lower(), route.route_name)
                if other != route.route_name:
                    raise _fail(f"{extension} is taken by routes {other} and {route.route_name}; "
                                "list it under one route's extensions")
        return routes

    @model_validator(mode="after")
    def _incremental_only(self) -> "RoutedScoreSpec":
        if not self.incremental:
            raise _fail("routes: a mixed-media archive is scored incrementally; add incremental: true")
        return self


class GenerateSpec(_Strict):
    """Sample images from a trained GAN: `count` images, image i from latent vector (seed, i)."""

    version: _Version = Field(description='the spec format version; add "version: 1"')
    kind: Literal["generate"]
    name: _JobName = Field(description="the job name, e.g. digits-samples")
    task: Literal["gan"] = Field("gan", description="the task: gan (the only one that generates)")
    model: _Uri = Field(description="the output URI of a gan train job, e.g. s3://models/digits-gan/")
    count: Annotated[int, Field(strict=True, ge=1, le=100_000_000)] = Field(
        description="how many images to generate, e.g. 10000")
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)] = 0
    output: _Uri = Field(description="where to write the images and their index, e.g. s3://samples/digits/")
    batch_size: _BatchSize = 256
    grid_size: Annotated[int, Field(strict=True, ge=1, le=1024)] = 64
    resources: ScoreResources = Field(default_factory=ScoreResources)


class StylizeSpec(_Strict):
    """Restyle every image under `input` in each style of `styles`, keeping each image's size."""

    version: _Version = Field(description='the spec format version; add "version: 1"')
    kind: Literal["stylize"]
    name: _JobName = Field(description="the job name, e.g. stylize-photos")
    task: Literal["style-transfer"] = Field("style-transfer", description="the task: style-transfer")
    model: Annotated[str, Field(strict=True, min_length=1), AfterValidator(_check_model_source)] = Field(
        description="a stylization module: the output URI of a style-transfer train job, an s3:// or local "
                    "SavedModel directory, or a TF Hub handle (needs internet)")
    input: _Uri = Field(description="the URI of the content images, e.g. s3://photos/2026/")
    styles: list[_Uri] = Field(description="a list of style image URIs, e.g. [s3://media/styles/wave.jpg]")
    output: _Uri = Field(description="where to write the stylized images and tables, e.g. s3://stylized/photos/")
    batch_size: Annotated[int, Field(strict=True, ge=1, le=256)] = 4
    image_format: Literal["png", "jpeg"] = "jpeg"
    max_side: Annotated[int, Field(strict=True, ge=16, le=16384)] | None = None
    resources: ScoreResources = Field(default_factory=ScoreResources)

    @field_validator("styles")
    @classmethod
    def _some_styles(cls, styles: list[str]) -> list[str]:
        if not 1 <= len(styles) <= 64:
            raise _fail(f"must list 1 to 64 style image URIs (got {len(styles)}), "
                        "e.g. [s3://media/styles/wave.jpg]")
        return styles


Spec = Union[TrainSpec, ScoreSpec, RoutedScoreSpec, GenerateSpec, StylizeSpec]
_KINDS: dict[str, type[BaseModel]] = {"generate": GenerateSpec, "score": ScoreSpec, "stylize": StylizeSpec,
                                      "train": TrainSpec}



def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Read a YAML job spec, apply overrides and validate it.

    Args:
        path: the spec file; its name as given prefixes every error line.
        overrides: `key.path=value` strings; the value is parsed as YAML (`training.epochs=3`,
            `resources={num_workers: 1}`) and missing intermediate mappings are created.

    Returns:
        A `TrainSpec`, `ScoreSpec`, `GenerateSpec` or `StylizeSpec`, by the spec's `kind`.

    Raises:
        SpecError: naming the file, the field path, what is wrong and the fix; one line per problem.
    """
    source = str(path)
    data = _read_yaml(Path(path), source)
    if data is None:
        raise SpecError(f'{source}: the file is empty; start it with "version: 1" and a job kind '
                        f'("kind: train", "kind: score", "kind: generate" or "kind: stylize")')
    return parse_spec(data, source, overrides)


def parse_spec(data: Mapping, source: str = "<spec>", overrides: Sequence[str] = ()) -> Spec:
    """Validate an already-parsed spec (never mutated); see `load_spec`.

    Raises:
        SpecError: as `load_spec`.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f'{source}: the top level must be a mapping of fields such as "version: 1" '
                        f'and "kind: train" (got {_show(data)})')
    plain, overridden = _apply_overrides(_plain(data), overrides, source)
    problems = _credential_problems(plain, ())
    kind = plain.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:  # `kind: []` is unhashable
        problems.append((("kind",), _kind_problem(kind, "kind" in plain)))
        raise _spec_error(source, problems, overridden)
    model = RoutedScoreSpec if kind == "score" and "routes" in plain else _KINDS[kind]
    try:
        spec = model.model_validate(plain)
    except ValidationError as exc:
        # A credential problem already covers its subtree; pydantic's view of it would echo it.
        hidden = [loc for loc, _ in problems]
        for err in exc.errors(include_url=False):
            # A non-string key is a problem of the mapping that holds it, not a path of its own.
            loc = err["loc"][:-1] if err["type"] == "invalid_key" else err["loc"]
            if not any(_starts_with(loc, prefix) for prefix in hidden):
                problems.append((loc, _describe_error(model, err, _KINDS)))
    if problems:
        raise _spec_error(source, problems, overridden)
    return spec


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The spec as plain JSON-compatible data, defaults included; `parse_spec` reads it back."""
    return spec.model_dump(mode="json")


def spec_hash(spec: Spec) -> str:
    """12 hex characters of the sha256 of the canonical JSON of the spec (defaults included)."""
    canonical = json.dumps(spec_to_dict(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _credential_problems(value: Any, loc: _Loc) -> list[_Problem]:
    if isinstance(value, dict):
        problems: list[_Problem] = []
        for key, item in value.items():
            if isinstance(key, str) and _SECRET_KEY.search(key):
                problems.append((loc + (key,), _SECRET_KEY_PROBLEM))
            else:
                problems += _credential_problems(item, loc + (key,))
        return problems
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _credential_problems(item, loc + (i,))]
    if isinstance(value, str) and _USERINFO.search(value):
        return [(loc, _SECRET_URI_PROBLEM)]
    return []


def _kind_problem(kind: Any, present: bool) -> str:
    valid = sorted(_KINDS)
    if not present:
        return f"required field is missing (the job kind: {', '.join(valid)}); add e.g. \"kind: train\""
    if not isinstance(kind, str):
        return f"must be one of {', '.join(valid)} (got {_show(kind)})"
    return _unknown_choice("kind", kind, valid)
