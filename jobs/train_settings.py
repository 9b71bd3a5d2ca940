"""Training settings decided from the data: the batch size, and when to stop.

`training.batch_size` is the global batch: under MultiWorkerMirroredStrategy each step takes
`batch_size / num_workers` examples on every worker and averages the gradients over all of
them, so one step is one step of size `batch_size` whatever the worker count, an epoch has
`examples / batch_size` steps, and the learning rate belongs to the global batch. Adding
workers therefore changes neither the number of steps nor the learning rate a spec needs;
raising the batch k-fold gives k-fold fewer steps, and the usual remedy is a learning rate
raised with it (the "linear scaling rule", with care above ~8x). The default keeps the global
batch a function of the data alone, so 1 and N workers train the same way.
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
    per_worker: int  # what each worker's input pipeline batches
    reason: str | None = None  # why the batch is not the one the spec says (unset, or uneven); None when it is


def batch_size_for(requested: int, is_set: bool, examples: int, workers: int) -> BatchSize:
    """The global batch size to train with, and each worker's part of it.

    A set `training.batch_size` is used as given (rounded down to a multiple of the worker
    count, said in the reason), and refused when it exceeds the examples: a worker's part
    would not fit its share. An unset one is `DEFAULT_BATCH_SIZE` lowered to give an epoch
    `MIN_STEPS_PER_EPOCH` steps, in multiples of the worker count.

    Raises:
        MediaJobsError: a set batch size larger than the examples, or too few examples for
            one example per worker and step.
    """
    share = examples // workers
    if is_set:
        per_worker = requested // workers
        if per_worker > share or per_worker == 0:
            raise MediaJobsError(
                f"training.batch_size: {requested} is larger than the {examples} decoded training examples allow "
                f"on {workers} workers (each takes {requested / workers:g} of every step from its share of "
                f"{share}); lower training.batch_size" + (" or resources.num_workers" if per_worker == 0 else ""))
        size = per_worker * workers
        notes = [] if size == requested else [
            f"training.batch_size: {requested} is not a multiple of the {workers} workers; each step "
            f"takes {per_worker} examples per worker, {size} in all"]
        if examples // size < MIN_STEPS_PER_EPOCH:
            notes.append(f"training.batch_size: {size} as set gives an epoch {examples // size} "
                         f"step{'s' if examples // size != 1 else ''} over {examples} examples; unset, it would be "
                         "lowered to fit the data")
        return BatchSize(size, per_worker, "; ".join(notes) or None)
    fit = min(requested, examples // MIN_STEPS_PER_EPOCH)
    size = max(workers, fit - fit % workers)
    if size // workers > share:
        raise MediaJobsError(
            f"training.batch_size: {examples} decoded training examples are too few for "
            f"{workers} workers (each step needs at least one example per worker); "
            "lower resources.num_workers or add training data")
    if size == requested:
        return BatchSize(size, size // workers)
    return BatchSize(size, size // workers,
                     f"training.batch_size is unset: {size} instead of {requested}, so that each of the "
                     f"{examples // size} steps per epoch covers {size} of the {examples} examples "
                     f"({size // workers} per worker on {workers})")


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
    def from_config(cls, config: dict | None, state: dict | None = None) -> "EarlyStop | None":
        if not config:
            return None
        stop = cls(config["monitor"], config["patience"], config.get("restore_best", True))
        if state:
            stop.best_epoch, stop.best_value = state.get("best_epoch"), state.get("best_value")
            stop.stopped_after = state.get("stopped_after")
        return stop
