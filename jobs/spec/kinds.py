"""One schema per job kind: train, score (plain or routed), generate and stylize."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from jobs.spec.fields import (
    TRUST_DESCRIPTION,
    BatchSize,
    Count,
    Flag,
    JobName,
    MediaName,
    ModelUri,
    Strict,
    TaskName,
    Uri,
    Version,
    check_model_source,
    classifier_tasks,
    fail,
    task_definition,
)
from jobs.spec.sections import (
    SECTION_MODELS,
    AudioConfig,
    DriftConfig,
    FramesConfig,
    ModelConfig,
    ScoreResources,
    TrainData,
    TrainingConfig,
    TrainResources,
    only_for,
)
from tasks.registry import classifier_for_media, definitions

# What a train spec's `model` is, with an example: the task's default architecture when the
# spec names a task (`jobs.spec.load`), the image classifier's in the reference.
MODEL_DESCRIPTION = "the network to train, e.g. {{architecture: {architecture}}}"


class TrainSpec(Strict):
    version: Version = Field(description='the spec format version; add "version: 1"')
    kind: Literal["train"] = Field(description="the job kind")
    name: JobName = Field(description="the job name, e.g. cifar10-cnn")
    task: TaskName = Field(description="the task to run, e.g. image-classifier")
    model: ModelConfig = Field(description=MODEL_DESCRIPTION.format(architecture="cifar10-cnn"))
    data: TrainData = Field(description="the training data, e.g. {train: s3://media/cifar10/train/}")
    frames: FramesConfig | None = Field(None, description="video frame sampling (video-classifier)")
    audio: AudioConfig | None = Field(None, description="audio features (audio-classifier)")
    training: TrainingConfig = Field(
        default_factory=TrainingConfig,
        description="epochs, global batch size, learning rate, seed, restarts, early stopping")
    resources: TrainResources = Field(default_factory=TrainResources,
                                      description="the Ray Train workers (their ScalingConfig)")
    output: Uri = Field(description="where to write the trained model, e.g. s3://models/cifar10-cnn/")

    @field_validator("model")
    @classmethod
    def _architecture_fits_task(cls, model: ModelConfig, info: ValidationInfo) -> ModelConfig:
        task = info.data.get("task")
        known = task_definition(task)
        allowed = [a.name for a in known.architectures] if known is not None else []
        if allowed and model.architecture not in allowed:
            raise fail(f"architecture: task {task} trains {' or '.join(allowed)}, not {model.architecture}")
        return model

    @field_validator("frames", "audio")
    @classmethod
    def _section_fits_task(cls, section, info: ValidationInfo):
        if section is not None:
            assert info.field_name is not None  # always set in a field validator
            only_for(info.data.get("task"), info.field_name)
        return section

    @field_validator("data")
    @classmethod
    def _data_fits_task(cls, data: TrainData, info: ValidationInfo) -> TrainData:
        task = info.data.get("task")
        known = task_definition(task)
        if known is None:
            return data
        for name, hint in known.data_hints.items():
            if getattr(data, name) is None:
                raise fail(f"{name}: {hint}")
        if data.style is not None and "style" not in known.data:
            takers = [d.name for d in definitions() if "style" in d.data]
            raise fail(f"style: applies to task {' or '.join(takers)} only (this spec's task is {task}); delete it")
        if data.validation is not None and "validation" not in known.data:
            raise fail(f"validation: applies to classifier tasks only (this spec's task is {task}); delete it")
        return data

    @field_validator("training")
    @classmethod
    def _early_stopping_fits(cls, training: TrainingConfig, info: ValidationInfo) -> TrainingConfig:
        stopping, task, data = training.early_stopping, info.data.get("task"), info.data.get("data")
        if stopping is None:
            return training
        known = task_definition(task)
        if known is not None and not known.is_classifier:
            raise fail(f"early_stopping: applies to classifier tasks only (this spec's task is {task}); delete it")
        if stopping.monitor.startswith("val_") and data is not None and data.validation is None:
            raise fail(f"early_stopping.monitor: {stopping.monitor} is measured on held-out data; add "
                        f"data.validation: s3://bucket/validation/ or monitor {stopping.monitor[4:]}")
        return training

    @model_validator(mode="after")
    def _task_defaults(self) -> TrainSpec:
        # Fill the media section of the task with its defaults, so the spec hash and the
        # model metadata record what was actually used.
        known = task_definition(self.task)
        for name in known.filled_sections if known is not None else ():
            if getattr(self, name) is None:
                object.__setattr__(self, name, SECTION_MODELS[name]())
        return self


_ErrorRate = Annotated[float, Field(strict=False, ge=0, le=1, allow_inf_nan=False)]  # any share in 0..1
_Extension = Annotated[str, Field(strict=True, pattern=r"^\.[A-Za-z0-9]{1,16}$")]


class _ScoreCommon(Strict):
    version: Version = Field(description='the spec format version; add "version: 1"')
    kind: Literal["score"] = Field(description="the job kind")
    name: JobName = Field(description="the job name, e.g. score-images")
    input: Uri = Field(description="the URI of the objects to score, e.g. s3://archive/images/")
    output: Uri = Field(description="where to write the scores, e.g. s3://scores/images/")
    batch_size: BatchSize = Field(256, description="examples (images, frames, windows) per model call")
    top_k: Count = Field(3, description="how many of the best classes a row keeps in top_labels and top_scores")
    trust_model_code: Flag = Field(False, description=TRUST_DESCRIPTION)
    incremental: Flag = Field(False, description="score only new or changed objects, tables partitioned by run date")
    max_error_rate: _ErrorRate | None = Field(
        None, description="the share of scored objects that may fail before the run exits 1 "
                          "(default 0.05 with incremental: true, no limit otherwise)")
    resources: ScoreResources = Field(default_factory=ScoreResources, description="the model actor pool")
    drift: DriftConfig | None = Field(None, description="when the class mix or scores drifted from the nights "
                                                        "before (incremental: true; default max_psi 0.25, nights 7)")

    @property
    def error_budget(self) -> float | None:
        return self.max_error_rate if self.max_error_rate is not None or not self.incremental else 0.05

    @property
    def drift_settings(self) -> DriftConfig:
        return self.drift or DriftConfig()

    @model_validator(mode="after")
    def _drift_across_nights(self):
        if self.drift is not None and not self.incremental:
            raise fail("drift: drift is measured between the nights of an incremental run; add "
                       "incremental: true or delete drift")
        return self


class ScoreSpec(_ScoreCommon):
    task: TaskName = Field(description="the task to run, e.g. image-classifier")
    model: ModelUri = Field(description="the output URI of a train job, e.g. s3://models/cifar10-cnn/ "
                                         "(pin a version: s3://models/cifar10-cnn/@<model_id>)")
    frames: FramesConfig | None = Field(None, description="video frame sampling (video-classifier)")
    annotate: Flag = Field(False, description="write annotated videos and contact sheets (video-classifier)")

    @field_validator("task")
    @classmethod
    def _classifier_task(cls, task: str) -> str:
        classifiers = classifier_tasks()
        if task not in classifiers:
            known = task_definition(task)
            other = known.job_hint if known is not None else ""
            raise fail(f"a score job classifies ({', '.join(classifiers)}); {other}".rstrip("; "))
        return task

    @field_validator("frames", "annotate")
    @classmethod
    def _video_only(cls, value, info: ValidationInfo):
        if value:
            assert info.field_name is not None  # always set in a field validator
            only_for(info.data.get("task"), info.field_name)
        return value

    @model_validator(mode="after")
    def _no_annotation_in_incremental_runs(self) -> ScoreSpec:
        if self.annotate and self.incremental:
            raise fail("annotate: annotated videos are not written by incremental runs; delete annotate or "
                        "incremental")
        return self


class Route(Strict):
    """One modality of a mixed archive: which objects (by extension), scored by which model."""

    media: MediaName = Field(description="the kind of media this route scores")
    model: ModelUri = Field(description="the output URI of a train job for this media, e.g. "
                                         "s3://models/cifar10-cnn/ (or a pinned version: .../@<model_id>)")
    name: JobName | None = Field(None, description="the route's name in the tables (default: the media)")
    extensions: list[_Extension] | None = Field(
        None, description="object name suffixes this route takes, e.g. [.jpg, .png] (default: the media's)")
    frames: FramesConfig | None = Field(None, description="video frame sampling (media: video)")

    @property
    def task(self) -> str:
        known = classifier_for_media(self.media)
        assert known is not None, self.media  # media is validated against the registry's
        return known.name

    @property
    def route_name(self) -> str:
        return self.name or self.media

    @model_validator(mode="after")
    def _frames_for_video(self) -> Route:
        takers = [d.modality for d in definitions() if d.is_classifier and "frames" in d.sections]
        if self.frames is not None and self.media not in takers:
            raise fail(f"frames applies to media: {' or '.join(map(str, takers))} only (this route's media is "
                       f"{self.media}); delete it")
        return self


class RoutedScoreSpec(_ScoreCommon):
    """A score job over a mixed archive: `routes` send each object to the model for its media."""

    routes: list[Route] = Field(description="one entry per media, e.g. [{media: image, model: s3://models/cnn/}]")

    @field_validator("routes")
    @classmethod
    def _distinct_routes(cls, routes: list[Route]) -> list[Route]:
        from tasks import get_task

        if not routes:
            raise fail("must list at least one route, e.g. [{media: image, model: s3://models/cnn/}]")
        names = [r.route_name for r in routes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise fail(f"route names must differ ({', '.join(twice)} used twice); give each route a name")
        claimed: dict[str, str] = {}
        for route in routes:
            for extension in route.extensions or get_task(route.task).suffixes:
                other = claimed.setdefault(extension.lower(), route.route_name)
                if other != route.route_name:
                    raise fail(f"{extension} is taken by routes {other} and {route.route_name}; "
                                "list it under one route's extensions")
        return routes

    @model_validator(mode="after")
    def _incremental_only(self) -> RoutedScoreSpec:
        if not self.incremental:
            raise fail("routes: a mixed-media archive is scored incrementally; add incremental: true")
        return self


class GenerationQuality(Strict):
    """The generated images judged by a classifier trained on the same kind of images."""

    classifier: ModelUri = Field(description="the output URI of an image-classifier train job trained on the "
                                              "images the GAN learned, e.g. s3://models/digits-cnn/ (or a pinned "
                                              "version: .../@<model_id>)")
    confident: Annotated[float, Field(strict=False, gt=0, le=1, allow_inf_nan=False)] = Field(
        0.9, description="the top-class probability from which a sample counts as confidently classified")
    min_class_share: _ErrorRate = Field(0.03, description="classes with a smaller share of the samples are "
                                                     "reported as a possible mode collapse")


class GenerateSpec(Strict):
    """Sample images from a trained GAN: `count` images, image i from latent vector (seed, i)."""

    version: Version = Field(description='the spec format version; add "version: 1"')
    kind: Literal["generate"] = Field(description="the job kind")
    name: JobName = Field(description="the job name, e.g. digits-samples")
    task: Literal["gan"] = Field("gan", description="the task: gan (the only one that generates)")
    model: ModelUri = Field(description="the output URI of a gan train job, e.g. s3://models/digits-gan/ "
                                         "(or a pinned version: .../@<model_id>)")
    count: Annotated[int, Field(strict=True, ge=1, le=100_000_000)] = Field(
        description="how many images to generate, e.g. 10000")
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)] = Field(
        0, description="image i comes from latent vector (seed, i): the same seed and count give byte-identical PNGs")
    output: Uri = Field(description="where to write the images and their index, e.g. s3://samples/digits/")
    batch_size: BatchSize = Field(256, description="images generated per model call")
    grid_size: Annotated[int, Field(strict=True, ge=1, le=1024)] = Field(64, description="images shown in grid.png")
    quality: GenerationQuality | None = Field(
        None, description="judge the samples with a classifier, e.g. {classifier: s3://models/digits-cnn/}")
    trust_model_code: Flag = Field(False, description=TRUST_DESCRIPTION + " (the generator and the classifier)")
    resources: ScoreResources = Field(default_factory=ScoreResources, description="the generator actor pool")


class StylizeSpec(Strict):
    """Restyle every image under `input` in each style of `styles`, keeping each image's size."""

    version: Version = Field(description='the spec format version; add "version: 1"')
    kind: Literal["stylize"] = Field(description="the job kind")
    name: JobName = Field(description="the job name, e.g. stylize-photos")
    task: Literal["style-transfer"] = Field("style-transfer", description="the task: style-transfer")
    model: Annotated[str, Field(strict=True, min_length=1), AfterValidator(check_model_source)] = Field(
        description="a stylization module: the output URI of a style-transfer train job, an s3:// or local "
                    "SavedModel directory, or a TF Hub handle (needs internet)")
    input: Uri = Field(description="the URI of the content images, e.g. s3://photos/2026/")
    styles: list[Uri] = Field(description="a list of style image URIs, e.g. [s3://media/styles/wave.jpg]")
    output: Uri = Field(description="where to write the stylized images and tables, e.g. s3://stylized/photos/")
    batch_size: Annotated[int, Field(strict=True, ge=1, le=256)] = Field(
        4, description="content images of one size per module call")
    image_format: Literal["png", "jpeg"] = Field("jpeg", description="the file format of the stylized images")
    max_side: Annotated[int, Field(strict=True, ge=16, le=16384)] | None = Field(
        None, description="stylize at most this long a side, then resize the result back (default: full size)")
    trust_model_code: Flag = Field(False, description=TRUST_DESCRIPTION)
    resources: ScoreResources = Field(default_factory=ScoreResources, description="the stylizer actor pool")

    @field_validator("styles")
    @classmethod
    def _some_styles(cls, styles: list[str]) -> list[str]:
        if not 1 <= len(styles) <= 64:
            raise fail(f"must list 1 to 64 style image URIs (got {len(styles)}), "
                        "e.g. [s3://media/styles/wave.jpg]")
        return styles
