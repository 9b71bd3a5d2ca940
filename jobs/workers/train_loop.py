"""What every Ray Train worker of a train job runs: the MWMS epoch loop (`jobs.runs.train` starts it).

Each epoch: fit on this worker's shard, evaluate on the whole validation set (held in
memory, decoded once per job), agree on early stopping with the other ranks, save a
checkpoint on every rank (MWMS saving is collective, FACTS.md) and report it from rank 0.
With `restore_best`, rank 0 keeps a copy of the best epoch's exported files and puts it in
every checkpoint under `best/`, so a resumed job and the final export both have it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.storage.objects import parse_uri, write_bytes
from jobs.workers.devices import enable_gpu_memory_growth
from jobs.workers.metrics import EPOCH_SECONDS, EPOCHS, TRAIN_LOSS, record
from jobs.workers.tensorboard import EpochBoard
from jobs.workers.train_config import TrainLoopConfig
from jobs.workers.train_data import StoreTrainingContext, WholeDataset
from jobs.workers.train_settings import EarlyStop
from tasks.architecture import Architecture
from tasks.console import say, say_progress
from tasks.registry import definition
from tasks.training import TrainingPlan

WORKERS_DIR = "workers"  # one placement record per training worker (rank, node, devices)
BEST_DIR = "best"  # in a checkpoint: the exported entries of the best epoch so far (restore_best)
STATE_FILE = "state.json"


def train_loop_per_worker(ray_config: dict) -> None:
    """Runs on every Ray Train worker. TF_CONFIG is set by Ray Train for MWMS."""
    import ray.train
    import tensorflow as tf

    config = TrainLoopConfig.from_ray(ray_config)
    enable_gpu_memory_growth(tf)
    tf.get_logger().setLevel("ERROR")  # MWMS logs every collective at INFO
    ray_context = ray.train.get_context()
    rank = ray_context.get_world_rank()
    _record_placement(config.output, rank, ray_context.get_world_size())
    # The same seed on every rank: identical initial weights, and reruns that repeat.
    tf.keras.utils.set_random_seed(config.seed)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    known = definition(config.task.name)
    plan = known.training_plan
    context = StoreTrainingContext()  # stateless: no store client travels with the job
    best = tempfile.mkdtemp(prefix="best-") if rank == 0 else None  # rank 0's copy of the best epoch
    model, state = _restore_or_build(plan, config, strategy, best, rank)
    history: list[dict] = state.get("history", [])
    stop = EarlyStop.from_config(config.early_stopping, state.get("early_stopping"))

    # Read once per job: the validation set (and the style images) are evaluated every epoch.
    whole = {name: WholeDataset.read(ray.train.get_dataset_shard(name), config.whole_bytes[name])
             for name in config.datasets if name != "train"}
    train_data = plan.train_data(ray.train.get_dataset_shard("train"), config, whole, context)

    first = state["epoch"] + 1 if "epoch" in state else 0
    if stop is not None and stop.stopped_after is not None:
        first = config.epochs  # a job that stopped early and is run again: it is done
    board = EpochBoard(config.output) if rank == 0 else None
    loop = _EpochLoop(plan, context, known.architecture(config.architecture), model, config, strategy, rank, stop,
                      best, history, board)
    try:
        for epoch in range(first, config.epochs):
            if loop.run_epoch(epoch, train_data, whole):
                break
    finally:
        if best is not None:
            shutil.rmtree(best, ignore_errors=True)
        if board is not None:
            board.close()


@dataclass
class _EpochLoop:
    """One worker's model and what its epochs share."""

    plan: TrainingPlan
    context: StoreTrainingContext
    architecture: Architecture  # the network trained
    model: Any  # a tf-keras model
    config: TrainLoopConfig
    strategy: Any  # a tf.distribute strategy
    rank: int
    stop: EarlyStop | None
    best: str | None  # rank 0's copy of the best epoch's files (restore_best)
    history: list[dict]
    board: EpochBoard | None  # rank 0's TensorBoard event file

    def run_epoch(self, epoch: int, train_data, whole: dict) -> bool:
        """Fit, evaluate, agree on stopping, checkpoint and report; True when training stops."""
        import tensorflow as tf

        began, steps = time.time(), []  # the optimizer steps of the epoch: what the batch size means, seen
        fit = self.model.fit(train_data, epochs=1, steps_per_epoch=self.config.steps_per_epoch, verbose=0,
                             callbacks=[tf.keras.callbacks.LambdaCallback(
                                 on_train_batch_end=lambda batch, logs: steps.append(batch))])
        metrics = {"epoch": epoch + 1, **{name: float(values[-1]) for name, values in fit.history.items()}}
        metrics.update(self.plan.evaluate(self.model, whole, self.config, self.architecture))
        metrics["steps"] = len(steps)
        metrics["epoch_seconds"] = round(time.time() - began, 2)
        self.history.append(metrics)
        improved = stopping = False
        if self.stop is not None:
            improved = self.stop.update(epoch + 1, _agreed(self.strategy, _monitored(metrics, self.stop.monitor)))
            stopping = self.stop.should_stop(epoch + 1)
        self._checkpoint(epoch, metrics, improved)
        if stopping and self.stop is not None and self.rank == 0:
            say(f"early stopping: {self.stop.reason(self.config.epochs)}")
        return stopping

    def _checkpoint(self, epoch: int, metrics: dict, improved: bool) -> None:
        import ray.train

        with tempfile.TemporaryDirectory() as checkpoint_dir:
            # Every rank must save: MWMS saving runs collective ops (FACTS.md), and a
            # rank that skips it leaves the others waiting forever.
            self.plan.save(self.model, checkpoint_dir)
            Path(checkpoint_dir, STATE_FILE).write_text(json.dumps(
                {"epoch": epoch, "metrics": metrics, "history": self.history,
                 "early_stopping": self.stop.state() if self.stop else None}))
            if self.rank != 0:
                ray.train.report(metrics)
                return
            say("epoch " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in metrics.items()))
            say_progress("training", epoch + 1, self.config.epochs)
            _record_epoch(self.config, metrics)
            if self.stop is not None and self.stop.restore_best:
                assert self.best is not None  # rank 0 keeps a copy
                _keep_best(self.plan, checkpoint_dir, self.best, improved)
            images = self.plan.after_epoch(checkpoint_dir, epoch, self.config, self.context)
            if self.board is not None:
                self.board.log(epoch + 1, metrics, images)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir))


def _record_epoch(config: TrainLoopConfig, metrics: dict) -> None:
    """Rank 0's epoch as metrics (seconds, loss, one more epoch) for the head's endpoint."""
    labels = {"task": config.task.name, "spec": config.spec_name}
    record(EPOCH_SECONDS, metrics["epoch_seconds"], **labels)
    if isinstance(metrics.get("loss"), float):
        record(TRAIN_LOSS, metrics["loss"], **labels)
    record(EPOCHS, 1, **labels)


def _restore_or_build(plan, config: TrainLoopConfig, strategy, best: str | None, rank: int):
    """The model and state of the latest checkpoint (a resumed job), or a new model."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    with strategy.scope():
        if checkpoint is None:
            return plan.build(config.task, config), {}
        with checkpoint.as_directory() as checkpoint_dir:
            model = plan.load(checkpoint_dir, config)
            state = json.loads(Path(checkpoint_dir, STATE_FILE).read_text())
            if best is not None and Path(checkpoint_dir, BEST_DIR).is_dir():
                shutil.copytree(Path(checkpoint_dir, BEST_DIR), best, dirs_exist_ok=True)
    if rank == 0:
        say(f"resuming from checkpoint after epoch {state['epoch'] + 1}")
    return model, state


def _keep_best(plan, checkpoint_dir: str, best: str, improved: bool) -> None:
    """Rank 0: refresh its copy of the best epoch's exported files, and put the copy in the
    checkpoint. Plain file copies: no collective, so the other ranks need not join."""
    if improved:
        shutil.rmtree(best, ignore_errors=True)
        os.makedirs(best)
        for entry in plan.exported:
            source = Path(checkpoint_dir, entry)
            if source.is_dir():
                shutil.copytree(source, Path(best, entry))
            else:
                shutil.copy2(source, Path(best, entry))
    shutil.copytree(best, Path(checkpoint_dir, BEST_DIR))


def _monitored(metrics: dict, monitor: str) -> float:
    if monitor not in metrics:
        raise ValueError(f"training.early_stopping.monitor: this job reports no {monitor!r} "
                         f"(it reports {', '.join(k for k in metrics if k != 'epoch')})")
    return float(metrics[monitor])


def _agreed(strategy, value: float) -> float:
    """The mean of `value` over all ranks, so every rank takes the same early-stopping decision.

    Each rank computes the validation metrics itself; equal weights give equal values, but
    floating point need not agree to the last bit across machines, and one rank stopping
    while another goes on would leave the other waiting in a collective forever. A
    collective itself: every rank calls it at the same point of the epoch.
    """
    import tensorflow as tf

    per_replica = strategy.run(lambda: tf.constant(value, tf.float32))
    return float(strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None))


def _record_placement(output_uri: str, rank: int, world_size: int) -> None:
    """Write where this worker runs to `<output>/workers/rank-<rank>.json` (the driver puts
    all of them in metadata.json: which nodes trained, on which devices)."""
    import socket

    import ray

    runtime = ray.get_runtime_context()
    placement = {"rank": rank, "world_size": world_size, "node_id": runtime.get_node_id(),
                 "hostname": socket.gethostname(), "pid": os.getpid(),
                 "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
    write_bytes(parse_uri(output_uri).join(WORKERS_DIR, f"rank-{rank}.json").uri, json.dumps(placement).encode())
