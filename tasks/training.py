"""What a train job does that depends on its task: the training plan a task's definition holds
(`TaskDefinition.training_plan`), and what the job layer gives a plan.

`jobs.runs.train` runs the same job for every task (decode once, Ray Train + MWMS, per-epoch
checkpoints every rank writes, resume, export); a `TrainingPlan` fills in the parts that
depend on the task. `TrainingPlan` itself is the classifiers' plan: labelled class folders
(+ optional validation), `model.keras`, exported as is. The GAN's plan is
`tasks.gan_training.GanPlan`, AdaIN's `tasks.adain_training.StylePlan`.

A plan reaches the object store and the job's decoded data only through the
`TrainingContext` the job layer hands it (`jobs.workers.train_data`), and refuses data the job
cannot learn from with `TrainingDataError`, which the job layer shows the user as it is.
Plans are stateless: one object serves every job, on the driver and on every worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tasks.architecture import Architecture
from tasks.protocols import Trainable

MODEL_FILE = "model.keras"  # a classifier's checkpoint and exported model


class TrainingDataError(ValueError):
    """The data of a train job cannot train its task (the job layer shows it as a user error)."""


@dataclass(frozen=True)
class TrainingObjects:
    """The objects a train job reads, per dataset name, with the labels a classifier learns."""

    uris: dict[str, list[str]]
    sizes: dict[str, list[int]]
    labels: dict[str, list[int]]
    class_names: list[str] = field(default_factory=list)

    def describe(self) -> str:
        counts = "; ".join(f"{name}: {len(uris)} objects" for name, uris in self.uris.items())
        return counts + (f" in {len(self.class_names)} classes {self.class_names}" if self.class_names else "")


class TaskArchitectures(Protocol):
    """What a plan reads of its task's definition (`tasks.definition.TaskDefinition`, handed
    in by the job layer: a definition names its plan, so a plan cannot look definitions up)."""

    @property
    def architectures(self) -> tuple[Architecture, ...]: ...

    def architecture(self, name: str, /) -> Architecture: ...


class TrainingConfig(Protocol):
    """What a plan reads of what every training worker is told (`jobs.workers.train_config`)."""

    @property
    def task(self) -> Any: ...  # the task object (a `Trainable`)

    @property
    def architecture(self) -> str: ...

    @property
    def batch_size(self) -> int: ...  # global: tf.distribute splits each step's batch across the workers

    @property
    def learning_rate(self) -> float: ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def statistics(self) -> dict[str, Any] | None: ...  # fitted on the training set (audio normalisation)

    @property
    def output(self) -> str: ...  # the job's output prefix URI

    @property
    def seed(self) -> int: ...

    @property
    def shard_bytes(self) -> int: ...  # each worker's share of the decoded training examples


class WholeExamples(Protocol):
    """A dataset every worker reads whole (validation, style images)."""

    def batches(self, batch_size: int, /) -> Iterator[tuple[Any, Any]]: ...  # (examples, labels), in order


class TrainingContext(Protocol):
    """What the job layer gives a plan: the object store and the job's decoded data.

    The listings raise the job layer's user-facing error when there is nothing to train on.
    """

    def list_labelled(self, uri: str, suffixes: tuple[str, ...], class_names: list[str] | None = None,
                      field: str = "data.train") -> tuple[list[str], list[int], list[int], list[str]]:
        """Media objects in class-named folders `<uri>/<class>/<...>/<file>`: (uris, sizes, labels,
        classes); `class_names` maps validation folders to the training classes' ids; `field`
        is the spec field, for error messages."""
        ...

    def list_all(self, uri: str, suffixes: tuple[str, ...], field: str) -> tuple[list[str], list[int]]:
        """Every media object under `uri`, at any depth: (uris, sizes)."""
        ...

    def write_bytes(self, uri: str, data: bytes) -> None: ...

    def join(self, prefix_uri: str, *parts: str) -> str:
        """The URI of `parts` under the prefix `prefix_uri`."""
        ...

    def batches(self, shard: Any, config: TrainingConfig) -> Any:
        """(examples, labels) batches of this worker's shard of "train", reshuffled every
        epoch and repeated: a `tf.data.Dataset`."""
        ...


class TrainingPlan:
    """The classifier plan; the others override what differs."""

    exported: tuple[str, ...] = (MODEL_FILE,)  # checkpoint entries copied to `<output>/model/`
    split: tuple[str, ...] = ("train",)  # datasets split across workers; the others are read whole

    # --- on the driver ---------------------------------------------------------------------

    def list_objects(self, spec: Any, task: Trainable, known: TaskArchitectures,
                     context: TrainingContext) -> TrainingObjects:
        """The objects the train spec `spec` reads.

        Raises:
            TrainingDataError: the data cannot train the spec's architecture.
        """
        uris, sizes, labels, classes = context.list_labelled(spec.data.train, task.suffixes)
        architecture = known.architecture(spec.model.architecture)
        if architecture.classes is not None and len(classes) != architecture.classes:
            others = [a.name for a in known.architectures if a.classes is None]
            raise TrainingDataError(f"model.architecture: {architecture.name} needs exactly {architecture.classes} "
                                    f"class folders, found {classes} under {spec.data.train}; "
                                    f"use {' or '.join(others)}")
        objects = TrainingObjects({"train": uris}, {"train": sizes}, {"train": labels}, classes)
        if spec.data.validation:
            v_uris, v_sizes, v_labels, _ = context.list_labelled(spec.data.validation, task.suffixes, classes,
                                                                 "data.validation")
            objects.uris["validation"], objects.sizes["validation"] = v_uris, v_sizes
            objects.labels["validation"] = v_labels
        return objects

    def check_decoded(self, counts: dict[str, int]) -> None:
        """Refuse data the job cannot learn from (after decoding).

        Raises:
            TrainingDataError: what is missing.
        """

    def extra_metadata(self, checkpoint_dir: str) -> dict[str, Any]:
        """What the exported model records beyond the common metadata (from the checkpoint)."""
        return {}

    # --- on every worker -----------------------------------------------------------------

    def build(self, task: Trainable, config: TrainingConfig) -> Any:
        # Statistics fitted on the training set (the audio model's normalisation) go into the model.
        fitted = {"statistics": config.statistics} if config.statistics else {}
        return task.build_model(config.architecture, len(config.class_names), config.learning_rate, **fitted)

    def load(self, checkpoint_dir: str, config: TrainingConfig) -> Any:
        from tasks.keras_files import load_keras

        return load_keras(os.path.join(checkpoint_dir, MODEL_FILE), compile=True)

    def save(self, model: Any, directory: str) -> None:
        """Write the checkpoint. Runs on EVERY rank: MWMS saving is collective (FACTS.md)."""
        from tasks.keras_files import save_keras

        save_keras(model, os.path.join(directory, MODEL_FILE))

    def train_data(self, shard: Any, config: TrainingConfig, datasets: Mapping[str, WholeExamples],
                   context: TrainingContext) -> Any:
        """What `fit` trains on: (examples, labels) batches of this worker's shard, reshuffled every epoch."""
        return context.batches(shard, config)

    def evaluate(self, model: Any, datasets: Mapping[str, WholeExamples], config: TrainingConfig,
                 architecture: Architecture) -> dict[str, float]:
        """Metrics of the epoch's model beyond `fit`'s (`architecture` is the one trained)."""
        if "validation" not in datasets:
            return {}
        return evaluate_examples(model, datasets["validation"], config.batch_size, architecture)

    def after_epoch(self, checkpoint_dir: str, epoch: int, config: TrainingConfig,
                    context: TrainingContext) -> dict[str, bytes] | None:
        """Rank 0 only, from the checkpoint just written: what people look at during training.
        Returns images (PNG bytes by name) for the job's TensorBoard, or None.

        It must not touch the live model: outside `fit`, reading MWMS variables (e.g.
        batch-norm statistics) runs collectives the other ranks never join, and hangs.
        """
        return None


CLASSIFIER_PLAN = TrainingPlan()  # a task definition's plan unless it names another


def evaluate_examples(model: Any, data: WholeExamples, batch_size: int, architecture: Architecture) -> dict[str, float]:
    """Exact validation loss and accuracy over the whole (unsplit) validation set.

    The model is called directly rather than through `model.evaluate`: every worker
    holds the full validation set, so no collective is needed, and no batch is dropped.
    """
    import numpy as np

    losses, correct, count = 0.0, 0, 0
    for examples, labels in data.batches(max(batch_size, 256)):
        probabilities = architecture.class_probabilities(model(examples, training=False).numpy())
        labels = labels.astype(np.int64)
        # The cross-entropy each head trains with: binary for a sigmoid, categorical for a softmax.
        ceiling = 1 - 1e-7 if architecture.outputs == "sigmoid" else 1.0
        picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, ceiling)
        losses += float(-np.log(picked).sum())
        correct += int((probabilities.argmax(axis=1) == labels).sum())
        count += len(labels)
    return {"val_loss": losses / max(count, 1), "val_accuracy": correct / max(count, 1)}
