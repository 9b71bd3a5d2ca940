"""The job layer's side of a training plan (`tasks.training`): what is the same for every task.

`StoreTrainingContext` is the `TrainingContext` plans are handed: listings of media in the
object store, writes to it, and this worker's batches of decoded training examples (held in
memory when they fit, streamed otherwise). `WholeDataset` is a dataset every worker reads
whole (validation, style images).
"""

from __future__ import annotations

import logging
from typing import Any

from jobs.errors import MediaJobsError
from jobs.storage.objects import list_objects, parse_uri, write_bytes
from jobs.workers.decoding import EXAMPLE
from tasks.training import TrainingConfig

log = logging.getLogger(__name__)

IN_MEMORY_MAX_BYTES = 1 << 30  # a worker's decoded shard above this streams every epoch


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
    found = list(list_objects(prefix.uri, suffixes))
    if not found:
        raise MediaJobsError(f"{field}: no media found under {prefix.uri} (expected files with a suffix in "
                             f"{', '.join(suffixes)})")
    return [o.uri for o in found], [o.size for o in found]


class StoreTrainingContext:
    """The `tasks.training.TrainingContext` of a job: the object store and the decoded data.

    Stateless (the store's clients are made where it runs), so the driver and every worker
    each make their own.
    """

    def list_labelled(self, uri: str, suffixes: tuple[str, ...], class_names: list[str] | None = None,
                      field: str = "data.train") -> tuple[list[str], list[int], list[int], list[str]]:
        return list_labelled(uri, suffixes, class_names, field)

    def list_all(self, uri: str, suffixes: tuple[str, ...], field: str) -> tuple[list[str], list[int]]:
        return list_all(uri, suffixes, field)

    def write_bytes(self, uri: str, data: bytes) -> None:
        write_bytes(uri, data)

    def join(self, prefix_uri: str, *parts: str) -> str:
        return parse_uri(prefix_uri).as_prefix().join(*parts).uri

    def batches(self, shard: Any, config: TrainingConfig) -> Any:
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
