"""Training settings decided from the data: the batch size, and when to stop.

`training.batch_size` is the global batch. Each worker batches `batch_size` examples of its
own shard, and MultiWorkerMirroredStrategy splits every such batch into one part per
worker (`tf.distribute`'s rebatching), one part per step: a step takes `batch_size /
num_workers` examples on every worker and averages the gradients over all of them. An
epoch is `examples / batch_size` steps (`steps_per_epoch`, given to `fit`: Keras would
count the worker's unsplit batches and stop after 1/N of the data), so 1 and N workers
take the same steps, and the learning rate belongs to the global batch. Raising the batch
k-fold gives k-fold fewer steps; the usual remedy is a learning rate raised with it (the
"linear scaling rule", with care above ~8x). The default keeps the global batch a
function of the data alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from jobs.errors import MediaJobsError

DEFAULT_BATCH_SIZE = 64
# An unset batch size gives an epoch at least this many steps: on a small set, 64 meant one
# or two steps per epoch, and ten epochs of a 96-clip set were 20 updates (issue 19).
MIN_STEPS_PER_EPOCH = 8


@dataclass(frozen=True)
class BatchSize:
    size: int  # global: the examples of one optimizer step, over all workers
    steps_per_epoch: int  # examples // size, whatever the worker count
    reason: str | None = None  # what the job says about it (unset and lowered, or few steps); None: nothing


def batch_size_for(requested: int, is_set: bool, examples: int, workers: int) -> BatchSize:
    """The global batch size to train with, and the steps of an epoch.

    A set `training.batch_size` is used as given, and refused when a worker's share of the
    examples cannot fill one batch (each worker batches `batch_size` of its own examples,
    which TensorFlow splits into one part per worker, one part per step) or when it is
    smaller than the worker count (a worker's part would be empty). An unset one is
    `DEFAULT_BATCH_SIZE` lowered to give an epoch `MIN_STEPS_PER_EPOCH` steps.

    Raises:
        MediaJobsError: a set batch size that does not fit, or too few examples.
    """
    share = examples // workers
    if is_set:
        if share < requested:
            raise MediaJobsError(
                f"training.batch_size: {requested} is larger than each worker's share of the "
                f"{examples} decoded training examples ({share}); "
                "lower training.batch_size or resources.num_workers")
        if requested < workers:
            raise MediaJobsError(
                f"training.batch_size: {requested} is smaller than the {workers} workers (each step takes "
                f"batch_size / num_workers examples on every worker); raise training.batch_size to at least "
                f"{workers} or lower resources.num_workers")
        steps = examples // requested
        note = None if steps >= MIN_STEPS_PER_EPOCH else (
            f"training.batch_size: {requested} as set gives an epoch {steps} step{'s' if steps != 1 else ''} "
            f"over {examples} examples; unset, it would be lowered to fit the data")
        return BatchSize(requested, steps, note)
    size = max(workers, min(requested, examples // MIN_STEPS_PER_EPOCH, share))
    if size > share:
        raise MediaJobsError(
            f"training.batch_size: {examples} decoded training examples are too few for "
            f"{workers} workers (each step needs at least one example per worker); "
            "lower resources.num_workers or add training data")
    steps = examples // size
    if size == requested:
        return BatchSize(size, steps)
    return BatchSize(size, steps, f"training.batch_size is unset: {size} instead of {requested}, so that each of "
                                  f"the {steps} steps per epoch covers {size} of the {examples} examples "
                                  f"({size / workers:g} per worker on {workers})")


@dataclass
class EarlyStop:
    """Early stopping's state, the same on every rank (it is fed the ranks' agreed value).

    `monitor` is a metric of the epoch (`val_loss`, `val_accuracy`, `loss`, `accuracy`):
    losses improve downwards, accuracies upwards; any improvement counts.
    """

    monitor: str
    patience: int
    restore_best: bool = True
    best_epoch: int | None = None  # 1-based
    best_value: float | None = None
    stopped_after: int | None = None  # the epoch after which training stopped early

    @property
    def lower_is_better(self) -> bool:
        return self.monitor.endswith("loss")

    def update(self, epoch: int, value: float) -> bool:
        """Record the value of `epoch` (1-based); True when it is the best so far."""
        better = self.best_value is None or (
            value < self.best_value if self.lower_is_better else value > self.best_value)
        if better:
            self.best_epoch, self.best_value = epoch, value
        return better

    def should_stop(self, epoch: int) -> bool:
        """True when `patience` epochs in a row have not improved on the best (records it)."""
        if self.best_epoch is not None and epoch - self.best_epoch >= self.patience:
            self.stopped_after = epoch
            return True
        return False

    def reason(self, epochs: int) -> str:
        direction = "lowest" if self.lower_is_better else "highest"
        best = f"epoch {self.best_epoch} had the {direction} {self.monitor} ({self.best_value:.4g})"
        if self.stopped_after is not None:
            return (f"{best}; stopped after epoch {self.stopped_after} of {epochs}: no improvement "
                    f"in {self.patience} epochs")
        return f"{best}; all {epochs} epochs ran"

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict | None, state: dict | None = None) -> EarlyStop | None:
        if not config:
            return None
        stop = cls(config["monitor"], config["patience"], config.get("restore_best", True))
        if state:
            stop.best_epoch, stop.best_value = state.get("best_epoch"), state.get("best_value")
            stop.stopped_after = state.get("stopped_after")
        return stop
