"""What differs between tasks inside one train job: its data, its model on disk, its exports.

`jobs.runs.train` runs the same job for every task (decode once, Ray Train + MWMS, per-epoch
checkpoints every rank writes, resume, export); a `TrainingPlan` fills in the parts that
depend on the task:

- classifiers: labelled class folders (+ optional validation), `model.keras`, exported as is;
- gan: every image under the prefix (class folders allowed, labels unused), `save_gan`
  checkpoints (both networks and both optimizers), a sample grid per epoch under
  `<output>/samples/`, the generator exported;
- style-transfer: content images (`data.train`) paired on the fly with random style
  images (`data.style`, held whole by every worker), the AdaIN trainer checkpointed as
  `model.keras`, a hub-signature SavedModel exported as `stylizer/`.

Plans are stateless and named, so workers look them up by the task name they are given.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import MediaJobsError
from jobs.models.store import MODEL_FILE
from jobs.storage.objects import list_objects, parse_uri
from jobs.workers.decoding import EXAMPLE
from jobs.workers.train_config import TrainLoopConfig
from tasks.definition import Architecture
from tasks.protocols import Trainable
from tasks.registry import definition

log = logging.getLogger(__name__)

SAMPLES_DIR = "samples"  # GAN sample grids, one PNG per epoch
SAMPLE_SEED, SAMPLE_COUNT = 0, 64  # the same latent vectors every epoch: progress is comparable
STYLIZER_DIR = "stylizer"  # the exported SavedModel of a style-transfer job
STYLE_STATE = "adain"  # a style-transfer checkpoint: networks and optimizer (TF checkpoint), config
MAX_STYLE_IMAGES = 2048  # every worker holds all decoded style images in memory
IN_MEMORY_MAX_BYTES = 1 << 30  # a worker's decoded shard above this streams every epoch


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


def list_labelled(uri: str, suffixes: tuple[str, ...], class_names: list[str] | None = None,
                  field: str = "data.train") -> tuple[list[str], list[int], list[int], list[str]]:
    """Media objects in class-named folders `<uri>/<class>/<...>/<file>`: (uris, sizes, labels, classes).

    Args:
        uri: the prefix holding one folder per class.
        class_names: the training classes, to map validation folders to the same ids.
        field: the spec field, for error messages.

    Raises:
        MediaJobsError: no media, fewer than 2 classes, or a class the model does not know.
    """
    prefix = parse_uri(uri).as_prefix()
    found: list[tuple[str, int, str]] = []
    for obj in list_objects(prefix.uri, suffixes):
        parts = parse_uri(obj.uri).key[len(prefix.key):].strip("/").split("/")
        if len(parts) < 2:
            log.warning("skipping %s: not inside a class folder", obj.uri)
            continue
        found.append((obj.uri, obj.size, parts[0]))
    if not found:
        raise MediaJobsError(f"{field}: no media found in class folders under {prefix.uri} "
                             f"(expected {prefix.uri}<class>/<file> with a suffix in {', '.join(suffixes)})")
    folders = sorted({c for _, _, c in found})
    if class_names is None:
        if len(folders) < 2:
            raise MediaJobsError(f"{field}: found only class folder {folders} under {prefix.uri}; "
                                 "a classifier needs at least 2 class folders")
        class_names = folders
    unknown = sorted(set(folders) - set(class_names))
    if unknown:
        raise MediaJobsError(f"{field}: class folders {unknown} under {prefix.uri} are not among the "
                             f"training classes {class_names}")
    index = {name: i for i, name in enumerate(class_names)}
    return [u for u, _, _ in found], [s for _, s, _ in found], [index[c] for _, _, c in found], list(class_names)


def list_all(uri: str, suffixes: tuple[str, ...], field: str) -> tuple[list[str], list[int]]:
    """Every media object under `uri`, at any depth: (uris, sizes).

    Raises:
        MediaJobsError: when there is none.
    """
    prefix = parse_uri(uri).as_prefix()
    objects = list(list_objects(prefix.uri, suffixes))
    if not objects:
        raise MediaJobsError(f"{field}: no media found under {prefix.uri} (expected files with a suffix in "
                             f"{', '.join(suffixes)})")
    return [o.uri for o in objects], [o.size for o in objects]


class TrainingPlan:
    """The classifier plan; the others override what differs."""

    exported: tuple[str, ...] = (MODEL_FILE,)  # checkpoint entries copied to `<output>/model/`
    split: tuple[str, ...] = ("train",)  # datasets split across workers; the others are read whole

    # --- on the driver ---------------------------------------------------------------------

    def list_objects(self, spec, task: Trainable) -> TrainingObjects:
        uris, sizes, labels, classes = list_labelled(spec.data.train, task.suffixes)
        known = definition(spec.task)
        architecture = known.architecture(spec.model.architecture)
        if architecture.classes is not None and len(classes) != architecture.classes:
            others = [a.name for a in known.architectures if a.classes is None]
            raise MediaJobsError(f"model.architecture: {architecture.name} needs exactly {architecture.classes} class "
                                 f"folders, found {classes} under {spec.data.train}; use {' or '.join(others)}")
        objects = TrainingObjects({"train": uris}, {"train": sizes}, {"train": labels}, classes)
        if spec.data.validation:
            v_uris, v_sizes, v_labels, _ = list_labelled(spec.data.validation, task.suffixes, classes,
                                                         "data.validation")
            objects.uris["validation"], objects.sizes["validation"] = v_uris, v_sizes
            objects.labels["validation"] = v_labels
        return objects

    def check_decoded(self, counts: dict[str, int]) -> None:
        """Refuse data the job cannot learn from (after decoding)."""

    # --- on every worker -----------------------------------------------------------------

    def build(self, task: Trainable, config: TrainLoopConfig):
        # Statistics fitted on the training set (the audio model's normalisation) go into the model.
        fitted = {"statistics": config.statistics} if config.statistics else {}
        return task.build_model(config.architecture, len(config.class_names), config.learning_rate, **fitted)

    def load(self, checkpoint_dir: str, config: TrainLoopConfig):
        from tasks.keras_files import load_keras

        return load_keras(os.path.join(checkpoint_dir, MODEL_FILE), compile=True)

    def save(self, model, directory: str) -> None:
        """Write the checkpoint. Runs on EVERY rank: MWMS saving is collective (FACTS.md)."""
        from tasks.keras_files import save_keras

        save_keras(model, os.path.join(directory, MODEL_FILE))

    def train_data(self, shard, config: TrainLoopConfig, datasets: dict):
        """(examples, labels) batches of this worker's shard, reshuffled every epoch.

        A shard that fits the worker's memory budget is read once and served from memory:
        streaming it again every epoch through `to_tf` made an epoch 3-7x slower than the
        model's own step time (docs/performance.md). Larger shards stream.
        """
        # Each worker batches the global batch; MWMS splits every batch into one part per
        # worker and step (jobs.workers.train_settings). drop_last: a final batch smaller than the
        # worker count would leave a worker an empty part, which fails inside the kernels.
        # repeat: `fit` runs `steps_per_epoch` steps, which may end inside a pass.
        batch_size = config.batch_size
        if config.shard_bytes <= in_memory_budget():
            return _in_memory_batches(shard, batch_size, config.seed)
        return shard.to_tf(feature_columns=EXAMPLE, label_columns="label", batch_size=batch_size, drop_last=True,
                           local_shuffle_buffer_size=batch_size * 8).repeat()

    def evaluate(self, model, datasets: dict, config: TrainLoopConfig) -> dict[str, float]:
        if "validation" not in datasets:
            return {}
        architecture = definition(config.task.name).architecture(config.architecture)
        return evaluate_examples(model, datasets["validation"], config.batch_size, architecture)

    def extra_metadata(self, checkpoint_dir: str) -> dict[str, Any]:
        """What the exported model records beyond the common metadata (from the checkpoint)."""
        return {}

    def after_epoch(self, checkpoint_dir: str, epoch: int, config: TrainLoopConfig) -> None:
        """Rank 0 only, from the checkpoint just written: what people look at during training.

        It must not touch the live model: outside `fit`, reading MWMS variables (e.g.
        batch-norm statistics) runs collectives the other ranks never join, and hangs.
        """


def in_memory_budget() -> int:
    """Bytes of decoded examples a worker may hold: a quarter of what the node has free,
    and under 1 GiB so the tensors stay far from TensorFlow's 2 GiB graph limits."""
    import psutil

    return min(psutil.virtual_memory().available // 4, IN_MEMORY_MAX_BYTES)


class WholeDataset:
    """A dataset every worker reads whole (validation, style images): read into memory once
    per job when it fits the worker's budget, so each epoch's evaluation reads arrays, not Ray
    Data (which re-ran the read every epoch: 8.5 s of validation per 0.8 s epoch, issue 19)."""

    def __init__(self, shard, arrays: tuple | None) -> None:
        self._shard, self._arrays = shard, arrays

    @classmethod
    def read(cls, shard, size_bytes: int) -> WholeDataset:
        import numpy as np

        if size_bytes > in_memory_budget():
            return cls(shard, None)
        parts = list(shard.iter_batches(batch_size=None, batch_format="numpy"))
        if not parts:
            return cls(None, (np.zeros((0,)), np.zeros((0,), np.int64)))
        return cls(None, (np.concatenate([part[EXAMPLE] for part in parts]),
                          np.concatenate([part["label"] for part in parts])))

    def batches(self, batch_size: int):
        """(examples, labels) numpy batches, in order."""
        if self._arrays is None:
            for batch in self._shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
                yield batch[EXAMPLE], batch["label"]
            return
        examples, labels = self._arrays
        for start in range(0, len(labels), batch_size):
            yield examples[start: start + batch_size], labels[start: start + batch_size]


def _in_memory_batches(shard, batch_size: int, seed: int):
    """The shard read once into arrays; each epoch shuffles indices and gathers batches, so
    the examples are held once (a shuffle buffer of examples would copy them again)."""
    import numpy as np
    import tensorflow as tf

    parts = list(shard.iter_batches(batch_size=None, batch_format="numpy"))
    examples = tf.constant(np.concatenate([part[EXAMPLE] for part in parts]))
    labels = tf.constant(np.concatenate([part["label"] for part in parts]))
    count = int(labels.shape[0])
    options = tf.data.Options()
    # Ray Train has already split the data across workers: TF must not shard it again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return (tf.data.Dataset.range(count)
            .shuffle(count, seed=seed, reshuffle_each_iteration=True)
            .repeat()  # each pass reshuffled; an epoch is `steps_per_epoch` steps, not one pass
            .batch(batch_size, drop_remainder=True)
            .map(lambda picks: (tf.gather(examples, picks), tf.gather(labels, picks)))
            .with_options(options)
            .prefetch(tf.data.AUTOTUNE))


class GanPlan(TrainingPlan):
    exported = ("generator.keras",)

    def extra_metadata(self, checkpoint_dir: str) -> dict[str, Any]:
        return {"generator": "generator.keras", "samples": SAMPLES_DIR}

    def list_objects(self, spec, task: Trainable) -> TrainingObjects:
        uris, sizes = list_all(spec.data.train, task.suffixes, "data.train")
        return TrainingObjects({"train": uris}, {"train": sizes}, {"train": [0] * len(uris)})

    def build(self, task: Trainable, config: TrainLoopConfig):
        return task.build_model(config.architecture, 0, config.learning_rate)

    def load(self, checkpoint_dir: str, config: TrainLoopConfig):
        from tasks.gan import load_gan

        return load_gan(checkpoint_dir, config.learning_rate)

    def save(self, model, directory: str) -> None:
        from tasks.gan import save_gan

        save_gan(model, directory)

    def after_epoch(self, checkpoint_dir: str, epoch: int, config: TrainLoopConfig) -> None:
        from jobs.storage.objects import write_bytes
        from tasks.gan import generate_images, load_generator, sample_grid_png

        generator = load_generator(checkpoint_dir)  # a plain, local copy (see TrainingPlan.after_epoch)
        images = generate_images(generator, (SAMPLE_SEED, 0, SAMPLE_COUNT), int(generator.input_shape[-1]))
        uri = parse_uri(config.output).as_prefix().join(SAMPLES_DIR, f"epoch-{epoch + 1:03d}.png").uri
        write_bytes(uri, sample_grid_png(images, columns=8, scale=2))
        print(f"sample grid: {uri}", flush=True)


class StylePlan(TrainingPlan):
    exported = (STYLIZER_DIR,)  # content ("train") is split; every worker reads all style images

    def extra_metadata(self, checkpoint_dir: str) -> dict[str, Any]:
        with open(os.path.join(checkpoint_dir, STYLIZER_DIR, "assets.extra", "stylizer.json")) as handle:
            info = json.load(handle)
        return {"encoder_weights": info["encoder_weights"], "stylizer": STYLIZER_DIR}

    def list_objects(self, spec, task: Trainable) -> TrainingObjects:
        uris, sizes = list_all(spec.data.train, task.suffixes, "data.train")
        style_uris, style_sizes = list_all(spec.data.style, task.suffixes, "data.style")
        if len(style_uris) > MAX_STYLE_IMAGES:
            raise MediaJobsError(f"data.style: {len(style_uris)} style images under {spec.data.style}; every worker "
                                 f"holds all of them, so at most {MAX_STYLE_IMAGES}: point data.style at a "
                                 "smaller folder")
        return TrainingObjects({"train": uris, "style": style_uris}, {"train": sizes, "style": style_sizes},
                               {"train": [0] * len(uris), "style": [0] * len(style_uris)})

    def check_decoded(self, counts: dict[str, int]) -> None:
        if not counts.get("style"):
            raise MediaJobsError("data.style: none of the style images could be decoded")

    def load(self, checkpoint_dir: str, config: TrainLoopConfig):
        import tensorflow as tf

        from tasks.adain import AdaINTrainer

        state = os.path.join(checkpoint_dir, STYLE_STATE)
        with open(os.path.join(state, "config.json")) as handle:
            saved = json.load(handle)
        # The encoder's weights come from the checkpoint: never fetch ImageNet weights again.
        model = AdaINTrainer(encoder=saved["encoder"], style_weight=saved["style_weight"], encoder_weights="random")
        model.encoder_weights = saved["encoder_weights"]
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=config.learning_rate))
        model.optimizer.build(model.decoder.trainable_variables)  # slots first: restored in place
        _style_checkpoint(model).read(os.path.join(state, "state")).assert_existing_objects_matched()
        model.optimizer.learning_rate = config.learning_rate
        return model

    def save(self, model, directory: str) -> None:
        # Not `model.save(...keras)`: a .keras AdaINTrainer does not load back inside an MWMS
        # scope (its SyncOnRead metric variables fail to restore), and after
        # `tf.saved_model.save` tf-keras silently switches `.keras` saving to HDF5, which
        # refuses subclassed models. A TF checkpoint of the networks and optimizer does both.
        from tasks.adain import export_stylizer

        state = os.path.join(directory, STYLE_STATE)
        _style_checkpoint(model).write(os.path.join(state, "state"))
        with open(os.path.join(state, "config.json"), "w") as handle:
            json.dump(model.get_config(), handle)
        export_stylizer(model, os.path.join(directory, STYLIZER_DIR))

    def train_data(self, shard, config: TrainLoopConfig, datasets: dict):
        import numpy as np
        import tensorflow as tf

        styles = tf.constant(np.concatenate([examples for examples, _ in datasets["style"].batches(256)]))
        count = styles.shape[0]
        content = super().train_data(shard, config, datasets)

        def with_random_styles(images, _labels):
            # A fresh random style for every content image in every epoch.
            picks = tf.random.uniform([tf.shape(images)[0]], 0, count, dtype=tf.int32)
            return images, tf.gather(styles, picks)

        return content.map(with_random_styles)

    def evaluate(self, model, datasets: dict, config: TrainLoopConfig) -> dict[str, float]:
        return {}


def _style_checkpoint(model):
    import tensorflow as tf

    return tf.train.Checkpoint(encoder=model.encoder, decoder=model.decoder, optimizer=model.optimizer)


# By the name a task's definition gives (`TaskDefinition.training_plan`).
_PLANS: dict[str, TrainingPlan] = {"classifier": TrainingPlan(), "gan": GanPlan(), "style": StylePlan()}


def plan_for(task_name: str) -> TrainingPlan:
    """The training plan of a task, as its definition names it."""
    return _PLANS[definition(task_name).training_plan]


def extra_metadata(task_name: str, checkpoint_dir: str) -> dict[str, Any]:
    """What a task's exported model records beyond the common metadata."""
    return plan_for(task_name).extra_metadata(checkpoint_dir)


def evaluate_examples(model, data: WholeDataset, batch_size: int, architecture: Architecture) -> dict[str, float]:
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
