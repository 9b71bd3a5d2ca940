"""The sections of job specs: the model to build, media sampling, training settings, resources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from jobs.spec.fields import (
    ArchitectureName,
    BatchSize,
    Count,
    EncoderName,
    Flag,
    InputShape,
    Strict,
    Uri,
    fail,
    tasks_taking,
)
from tasks.registry import architecture as registered_architecture

# The model fields an architecture may take (each architecture's definition says which).
MODEL_FIELDS = ("input_shape", "image_shape", "latent_dim", "image_size", "encoder")


class ModelConfig(Strict):
    """The network a train job builds. `input_shape` (classifiers) defaults by architecture;
    `image_shape` and `latent_dim` are the DCGAN's, `image_size` and `encoder` AdaIN's."""

    architecture: ArchitectureName = Field(
        description="the network to build: cifar10-cnn or binary-cnn (images, video frames), mfcc-lstm (audio), "
                    "dcgan (gan), adain (style-transfer)")
    input_shape: InputShape | None = Field(
        None, description="[height, width, channels] of the model input (classifiers; default by architecture)")
    image_shape: InputShape | None = Field(
        None, description="[height, width, channels] of the generated images (dcgan; default [28, 28, 1])")
    latent_dim: Annotated[int, Field(strict=True, ge=1, le=4096)] | None = Field(
        None, description="the length of the generator's latent vector (dcgan; default 100)")
    image_size: Annotated[int, Field(strict=True, ge=8, le=1024)] | None = Field(
        None, description="the side of the square training crops (adain; default 256; a multiple of 8 for vgg19, "
                          "of 4 for tiny)")
    encoder: EncoderName | None = Field(
        None, description="the frozen encoder (adain; default vgg19, with ImageNet weights when they can be "
                          "loaded; tiny is small and random by design)")

    @model_validator(mode="before")
    @classmethod
    def _fields_of_the_architecture(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        name = data.get("architecture")
        known = registered_architecture(name) if isinstance(name, str) else None
        if known is None:
            return data  # reported on its own field
        allowed = tuple(known.fields)
        for field in MODEL_FIELDS:
            if data.get(field) is not None and field not in allowed:  # null: as written back by spec_to_dict
                takes = f"; {name} takes {', '.join(allowed)}" if allowed else ""
                raise fail(f"{field}: {known.refused_hint or f'{name} has no {field}'}{takes}; delete {field}")
        return {**data, **{field: known.fields[field] for field in allowed if data.get(field) is None}}

    @model_validator(mode="after")
    def _sizes_fit_the_network(self) -> ModelConfig:
        known = registered_architecture(self.architecture)
        problem = known.check(self.fields()) if known is not None and known.check is not None else None
        if problem:
            raise fail(problem)
        return self

    def fields(self) -> dict[str, Any]:
        """The architecture's fields as set (defaults filled): what the task is built with."""
        return {name: getattr(self, name) for name in MODEL_FIELDS if getattr(self, name) is not None}


ImageModelConfig = ModelConfig  # the name before GAN and style-transfer models existed


class FramesConfig(Strict):
    """How video frames are sampled: every `every_n_frames` frames if set, else every `every_seconds`."""

    every_seconds: Annotated[float, Field(strict=False, gt=0, allow_inf_nan=False)] | None = Field(
        1.0, description="sample the frame nearest to every multiple of this many seconds")
    every_n_frames: Count | None = Field(None, description="sample every n-th frame instead of by time")
    max_frames: Count = Field(300, description="at most this many frames per video")


class AudioConfig(Strict):
    """How audio is turned into model input: resampled mono, cut into windows, MFCCs per window."""

    sample_rate: Annotated[int, Field(strict=True, ge=4000, le=96000)] = Field(
        16000, description="audio is resampled to this rate (Hz), mono")
    n_mfcc: Annotated[int, Field(strict=True, ge=1, le=128)] = Field(
        13, description="MFCC coefficients per 10 ms frame")
    window_seconds: Annotated[float, Field(strict=False, gt=0, le=60, allow_inf_nan=False)] = Field(
        1.0, description="the length of one scored window; a clip's last window shorter than a quarter of it "
                         "is dropped, a shorter clip is one padded window")

    @model_validator(mode="after")
    def _window_holds_an_fft_frame(self) -> AudioConfig:
        # The MFCC frame is 25 ms at 16 kHz (n_fft 400); a window must hold one.
        if self.window_seconds * self.sample_rate < 400:
            raise fail(f"window_seconds: {self.window_seconds} s at {self.sample_rate} Hz is shorter than one "
                        f"MFCC frame (400 samples); use at least {400 / self.sample_rate:.3f}")
        return self


# The sections a task may take beside the common ones, by name (a task's definition lists
# its own); `annotate` is a score spec's flag and has no model.
SECTION_MODELS: dict[str, type[Strict]] = {"frames": FramesConfig, "audio": AudioConfig}
_STYLE_TRAINING_IMAGES = 4096  # style images travel to every worker: bounded by design


def only_for(task_name: str | None, section: str) -> None:
    """Refuse a section the spec's task does not take (its definition lists the ones it does)."""
    takers = tasks_taking(section)
    if task_name is not None and task_name not in takers:
        raise fail(f"{section} applies to task {' or '.join(takers)} only (this spec's task is {task_name}); "
                   "delete it")


class TrainData(Strict):
    train: Uri = Field(description="the URI of the training images, e.g. s3://media/cifar10/train/")
    validation: Uri | None = Field(None, description="the URI of the validation images (classifiers)")
    style: Uri | None = Field(None, description="the URI of the style images (style-transfer), "
                                                 "e.g. s3://media/styles/")


class EarlyStopping(Strict):
    """Stop when `monitor` has not improved for `patience` epochs; with `restore_best`, the
    exported model is the best epoch's (jobs.workers.train_settings.EarlyStop)."""

    monitor: Literal["val_loss", "val_accuracy", "loss", "accuracy"] = Field(
        "val_loss", description="the figure to watch; val_* need data.validation")
    patience: Count = Field(3, description="epochs without improvement before training stops")
    restore_best: Flag = Field(True, description="export the best epoch's model rather than the last one's")


class DriftConfig(Strict):
    """When tonight's class mix or score distribution has moved from the trailing nights'
    (jobs.nightly.drift: the population stability index per modality)."""

    max_psi: Annotated[float, Field(strict=False, gt=0, le=10, allow_inf_nan=False)] = Field(
        0.25, description="the PSI above which the report and the metrics mark the night as drifted "
                          "(below 0.1 stable, 0.1-0.25 worth a look)")
    nights: Annotated[int, Field(strict=True, ge=1, le=90)] = Field(
        7, description="how many committed nights before tonight are pooled as the baseline")


class TrainingConfig(Strict):
    epochs: Count = Field(10, description="passes over the training data")
    # Global (over all workers). Unset, it is 64 lowered to fit the data (jobs.workers.train_settings);
    # set, it is used as given or refused.
    batch_size: BatchSize = Field(
        64, description="examples per optimizer step over all workers; unset: 64, lowered so an epoch has at "
                        "least 8 steps")
    learning_rate: Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)] = Field(
        0.001, description="the optimizer's learning rate, for the global batch")
    seed: Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)] = Field(
        0, description="the random seed of every rank (same initial weights; reruns repeat)")
    max_failures: Annotated[int, Field(strict=True, ge=0)] = Field(
        2, description="how often Ray Train may restart the workers from the last checkpoint")
    early_stopping: EarlyStopping | None = Field(
        None, description="stop when a figure stops improving (classifier tasks), e.g. {monitor: val_loss}")

    @property
    def batch_size_is_set(self) -> bool:
        return "batch_size" in self.model_fields_set


_GpuShare = Annotated[float, Field(strict=False, ge=0, le=64, allow_inf_nan=False)]


def _gpu_share(value: float | None, use_gpu: bool, field: str) -> float:
    """GPUs per worker or actor: 1 by default with use_gpu, else 0; a contradiction is refused."""
    if value and not use_gpu:
        raise fail(f"{field}: set use_gpu: true as well, or delete {field}")
    if use_gpu and value == 0:
        raise fail(f"{field}: use_gpu is true but {field} is 0; set it above 0 (e.g. 1) or use_gpu: false")
    return float(value if value is not None else (1 if use_gpu else 0))


class TrainResources(Strict):
    """Ray Train's ScalingConfig (see jobs.runs.resources): one worker per MWMS replica."""

    num_workers: Count = Field(2, description="training workers (MWMS replicas)")
    use_gpu: Flag = Field(False, description="give each worker GPUs (TensorFlow memory growth on)")
    cpus_per_worker: Count = Field(1, description="CPUs each worker reserves")
    gpus_per_worker: _GpuShare | None = Field(None, description="GPUs per worker with use_gpu (default 1)")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how workers are placed on nodes: PACK (fewest nodes), SPREAD, STRICT_SPREAD "
                            "(one worker per node), STRICT_PACK (one node)")

    @model_validator(mode="after")
    def _gpus_need_use_gpu(self) -> TrainResources:
        object.__setattr__(self, "gpus_per_worker", _gpu_share(self.gpus_per_worker, self.use_gpu, "gpus_per_worker"))
        return self


class ScoreResources(Strict):
    """The model actor pool (see jobs.runs.resources): `concurrency` actors, spread over the nodes."""

    concurrency: Count = Field(2, description="model actors; each fetches, decodes and runs the model")
    use_gpu: Flag = Field(False, description="give each actor GPUs (TensorFlow memory growth on)")
    num_gpus: _GpuShare | None = Field(None, description="GPUs per actor with use_gpu (default 1; 0.5 shares one)")
    cpus_per_actor: Annotated[float, Field(strict=False, gt=0, le=256, allow_inf_nan=False)] = Field(
        1, description="CPUs each actor reserves (for fetching, decoding and the model alike)")

    @model_validator(mode="after")
    def _gpus_need_use_gpu(self) -> ScoreResources:
        object.__setattr__(self, "num_gpus", _gpu_share(self.num_gpus, self.use_gpu, "num_gpus"))
        return self
