"""The training runner: a train spec to a Ray Train `TensorflowTrainer` job under MWMS.

Data flow: list the task's objects (as the task's training plan says, `tasks.training`:
class folders for classifiers; the plan is handed the store through
`jobs.workers.train_data.StoreTrainingContext`) -> Ray Data fetch+decode (materialized
once, uint8) -> the batch size and any fitted statistics (the audio model's feature
normalisation) decided from the decoded data (`jobs.workers.train_settings`, `fitted_statistics`)
-> `streaming_split` of `train` to workers -> each worker (`jobs.workers.train_loop`) reads its
shard and the validation set into memory once, builds the model under
`MultiWorkerMirroredStrategy`, fits one epoch at a time, evaluates, agrees on early
stopping, and saves a checkpoint (every rank saves: MWMS save is collective; only rank 0's
is reported) -> Ray Train persists checkpoints under `<output>/train/` -> the driver exports
the model (the plan's files; the best epoch's with `restore_best`) as
`<output>/model/versions/<model_id>/` with `metadata.json` (each file's digest) and moves
`<output>/model/LATEST` to it (`jobs.models.export`).

Re-running a spec whose output already holds checkpoints resumes from the latest
(Ray Train V2 restores the run named `train` under the output URI).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import JobFailedError, MediaJobsError, root_cause
from jobs.models.export import export_model
from jobs.models.metadata import ModelMetadata
from jobs.models.task_config import task_config_for
from jobs.runs.output_check import prepare_output
from jobs.runs.resources import scaling_config
from jobs.runs.tracking import track_training
from jobs.spec.kinds import TrainSpec
from jobs.storage.objects import filesystem_for
from jobs.workers.decoding import EXAMPLE, fetch_and_decode
from jobs.workers.mwms_backend import MwmsConfig
from jobs.workers.train_config import TrainLoopConfig
from jobs.workers.train_data import StoreTrainingContext
from jobs.workers.train_loop import BEST_DIR, STATE_FILE, WORKERS_DIR, train_loop_per_worker
from jobs.workers.train_settings import BatchSize, batch_size_for
from tasks.definition import TaskDefinition
from tasks.registry import definition
from tasks.training import TrainingDataError, TrainingObjects, TrainingPlan

log = logging.getLogger(__name__)

RUN_NAME = "train"  # Ray Train run folder under the output URI (checkpoints live here)


def _decoded_dataset(uris: list[str], sizes: list[int], labels: list[int], task: Any, seed: int):
    import ray.data

    items = [{"uri": u, "size": s, "label": lab} for u, s, lab in zip(uris, sizes, labels)]
    blocks = max(2, min(len(items) // 64, 200))
    ds: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=blocks)
    # fn_kwargs supplies the keyword-only arguments (ray's Callable type cannot say so, hence the ignore).
    ds = ds.map_batches(fetch_and_decode, fn_kwargs={"task": task, "keep_errors": False},  # type: ignore[arg-type]
                        batch_size=64, batch_format="numpy")
    # Decode once: epochs then stream decoded blocks from the object store, not from S3.
    return ds.select_columns(["uri", EXAMPLE, "label"]).random_shuffle(seed=seed).materialize()


@dataclass
class TrainResult:
    model_uri: str
    metrics: dict[str, float]
    class_names: list[str]
    epochs_run: int
    examples: int
    skipped: int
    seconds: float
    workers: list[dict] = field(default_factory=list)  # placement records: rank, node_id, hostname, gpu_ids
    exported_epoch: int | None = None  # the epoch whose model was exported (the best, with restore_best)
    run_folder: str = ""  # <output>/runs/<model_id>/: the run's records (the CLI's job.log)


def run_train(spec: TrainSpec, echo=print) -> TrainResult:
    """Train the spec's model on the cluster `ray` is connected to; export it to the output."""
    from tasks import get_task

    started = time.time()
    output = prepare_output(spec.output)
    task_config = task_config_for(spec)
    task = get_task(spec.task)(**task_config)
    known = definition(spec.task)
    plan = known.training_plan
    data = _prepare_data(spec, task, known, echo)
    workers = spec.resources.num_workers
    config = _loop_config(spec, task, data, output.uri)
    echo(f"training {spec.model.architecture} on {workers} workers (MultiWorkerMirroredStrategy), "
         f"{spec.training.epochs} epochs of global batch {data.batch.size}; checkpoints under "
         f"{output.join(RUN_NAME).uri}/")
    checkpoint = _fit(spec, plan, config, data.datasets, output)

    placements = read_placements(output, workers)
    with checkpoint.as_directory() as checkpoint_dir:
        state = json.loads((Path(checkpoint_dir) / STATE_FILE).read_text())
        exported = _exported_epoch(state, spec.training.epochs)
        source = Path(checkpoint_dir) / (BEST_DIR if exported.get("restored") else "")
        if exported.get("reason"):
            echo(f"early stopping: {exported['reason']}")
        metadata = _model_metadata(spec, task_config, task, plan, data, _Trained(source, state, exported, placements))
        version = export_model(source, metadata, output.uri,
                               extra={"training_curve.svg": training_curve_svg(state["history"]).encode()})
        tracked = track_training(spec, version.metadata, source, plan.exported, echo)
        if tracked:
            echo(f"tracked in MLflow: run {tracked}")
    return TrainResult(version.uri, exported["metrics"], data.objects.class_names, state["epoch"] + 1,
                       data.examples, data.skipped, time.time() - started, placements, exported["epoch"],
                       output.join("runs", metadata.model_id).uri + "/")


@dataclass(frozen=True)
class _PreparedData:
    """A train job's data on the driver: listed by the task's plan, decoded once, and what was
    decided from it before training."""

    objects: TrainingObjects
    datasets: dict[str, Any]  # dataset name -> materialized Ray Dataset of decoded examples
    examples: int  # decoded training examples
    skipped: int  # objects that could not be decoded
    batch: BatchSize
    statistics: dict | None  # fitted on the training set (the audio model's normalisation)


@dataclass(frozen=True)
class _Trained:
    """What training left for the export: the checkpoint's folder to export and its state."""

    source: Path  # the exported epoch's files (the checkpoint, or its best/)
    state: dict  # the checkpoint's state.json
    exported: dict  # `_exported_epoch`: which epoch, its metrics, early stopping
    placements: list[dict]


def _prepare_data(spec: TrainSpec, task: Any, known: TaskDefinition, echo) -> _PreparedData:
    """List the task's objects (its plan says which), decode them once, and decide the batch
    size and any statistics fitted on the training set.

    Raises:
        MediaJobsError: the plan refused the data, or there is none.
    """
    plan = known.training_plan
    with _shown_to_user():
        objects = plan.list_objects(spec, task, known, StoreTrainingContext())
    echo(f"training data: {objects.describe()}")
    datasets, decoded, skipped = _decoded_datasets(objects, task, spec.training.seed)
    if skipped:
        echo(f"warning: {skipped} objects could not be decoded and were left out of training")
    with _shown_to_user():
        plan.check_decoded(decoded)
    batch = batch_size_for(spec.training.batch_size, spec.training.batch_size_is_set, decoded["train"],
                           spec.resources.num_workers)
    if batch.reason:
        echo(batch.reason)
    statistics = fitted_statistics(datasets["train"], task)
    if statistics:
        echo(f"feature normalisation fitted on {statistics['frames']} frames of the training set")
    return _PreparedData(objects, datasets, decoded["train"], skipped, batch, statistics)


def _loop_config(spec: TrainSpec, task: Any, data: _PreparedData, output_uri: str) -> TrainLoopConfig:
    """What every training worker is told."""
    early_stopping = spec.training.early_stopping
    return TrainLoopConfig(
        task=task, architecture=spec.model.architecture, epochs=spec.training.epochs,
        batch_size=data.batch.size, steps_per_epoch=data.batch.steps_per_epoch,
        learning_rate=spec.training.learning_rate,
        class_names=data.objects.class_names, datasets=sorted(data.datasets), output=output_uri,
        seed=spec.training.seed, statistics=data.statistics, spec_name=spec.name,
        early_stopping=early_stopping.model_dump() if early_stopping else None,
        # Each worker's share of the decoded examples: small shards are served from memory.
        shard_bytes=data.datasets["train"].size_bytes() // spec.resources.num_workers,
        whole_bytes={name: ds.size_bytes() for name, ds in data.datasets.items() if name != "train"},
    )


def _model_metadata(spec: TrainSpec, task_config: dict, task: Any, plan: TrainingPlan, data: _PreparedData,
                    trained: _Trained) -> ModelMetadata:
    """What the exported model records: how it was trained, on what, and with which result."""
    exported, state = trained.exported, trained.state
    return ModelMetadata.model_validate({
        "model_id": f"{spec.name}-{_digest(trained.source / plan.exported[0])[:12]}", "task": spec.task,
        "architecture": spec.model.architecture, "task_config": task_config,
        "input_shape": list(task.example_shape), "class_names": data.objects.class_names,
        "files": list(plan.exported),
        "epochs": state["epoch"] + 1, "metrics": exported["metrics"], "history": state["history"],
        "exported_epoch": exported["epoch"],
        "batch_size": data.batch.size, **({"batch_size_reason": data.batch.reason} if data.batch.reason else {}),
        **({"feature_statistics": data.statistics} if data.statistics else {}),
        **({"early_stopping": exported["early_stopping"]} if "early_stopping" in exported else {}),
        "examples": data.examples, "skipped": data.skipped, "spec_name": spec.name,
        "workers": trained.placements,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **plan.extra_metadata(str(trained.source)),
    })


@contextmanager
def _shown_to_user() -> Iterator[None]:
    """A plan's refusal of the job's data (`TrainingDataError`) as the job layers' user-facing
    error, with its message as it is."""
    try:
        yield
    except TrainingDataError as error:
        raise MediaJobsError(str(error)) from None


def _decoded_datasets(objects, task, seed: int) -> tuple[dict, dict[str, int], int]:
    """Each dataset of the job decoded once (uint8, materialized); how many examples each
    holds; how many objects could not be decoded."""
    datasets, decoded, skipped = {}, {}, 0
    for name, uris in objects.uris.items():
        datasets[name] = _decoded_dataset(uris, objects.sizes[name], objects.labels[name], task, seed)
        decoded[name] = datasets[name].count()
        skipped += len(uris) - (_objects_decoded(datasets[name]) if decoded[name] else 0)
    return datasets, decoded, skipped


def _objects_decoded(dataset) -> int:
    """How many objects gave at least one example (a video gives many): the distinct URIs of
    the materialized blocks, gathered here (an aggregation would start a shuffle for this)."""
    import pyarrow.compute as pc

    uris: set[str] = set()
    for batch in dataset.select_columns(["uri"]).iter_batches(batch_size=None, batch_format="pyarrow"):
        uris.update(pc.unique(batch.column("uri")).to_pylist())
    return len(uris)


def _fit(spec: TrainSpec, plan, config: TrainLoopConfig, datasets: dict, output):
    """Ray Train's TensorflowTrainer over the workers; the last checkpoint it reported.

    Raises:
        JobFailedError: a worker failed (its root cause), or no checkpoint was written.
    """
    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.tensorflow import TensorflowTrainer

    trainer = TensorflowTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config=config.for_ray(),
        tensorflow_config=MwmsConfig(),  # type: ignore[arg-type]  # Ray's TensorflowConfig, without importing TF
        scaling_config=scaling_config(spec.resources),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=list(plan.split)),
        run_config=RunConfig(
            name=RUN_NAME, storage_path=output.fs_path.rstrip("/"), storage_filesystem=filesystem_for(output),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=spec.training.max_failures),
        ),
    )
    try:
        result = trainer.fit()
    except MediaJobsError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray wraps worker failures; show their root cause
        raise JobFailedError(f"training failed: {root_cause(exc)}") from exc
    if result.checkpoint is None:
        raise JobFailedError("training finished without a checkpoint; see the worker logs above")
    return result.checkpoint


def _exported_epoch(state: dict, epochs: int) -> dict:
    """Which epoch's model the export holds, with its metrics: the last one, or the best one
    by the monitored metric when early stopping restores it (`restored`, with the reason)."""
    from jobs.workers.train_settings import EarlyStop

    last = {"epoch": state["epoch"] + 1, "metrics": state["metrics"]}
    stop_state = state.get("early_stopping")
    stop = EarlyStop.from_config(stop_state, stop_state)
    if stop is None:
        return last
    reason = stop.reason(epochs)
    record = {**stop.state(), "reason": reason}
    if not stop.restore_best or stop.best_epoch is None or stop.best_epoch == last["epoch"]:
        return {**last, "early_stopping": record, "reason": reason}
    best = state["history"][stop.best_epoch - 1]
    return {"epoch": stop.best_epoch, "metrics": best, "early_stopping": record, "reason": reason, "restored": True}


def fitted_statistics(train, task) -> dict | None:
    """What a task fits on the whole training set before training (the audio model's feature
    normalisation): moments per block of decoded examples, added up here. None for a task
    that fits nothing."""
    import numpy as np

    if not hasattr(task, "feature_moments"):
        return None

    def moments(batch: dict) -> dict:
        return {"moments": task.feature_moments(batch[EXAMPLE])[None]}

    total = sum(np.asarray(batch["moments"]).sum(axis=0) for batch in train.select_columns([EXAMPLE]).map_batches(
        moments, batch_format="numpy", batch_size=None).iter_batches(batch_size=None, batch_format="numpy"))
    return task.feature_statistics(total)


def _digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, in order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def read_placements(output, world_size: int) -> list[dict]:
    """The placement records of ranks 0..world_size-1 (those that were written)."""
    from jobs.storage.objects import exists, read_bytes

    records = []
    for rank in range(world_size):
        uri = output.join(WORKERS_DIR, f"rank-{rank}.json").uri
        if exists(uri):
            records.append(json.loads(read_bytes(uri)))
    return records


def training_curve_svg(history: list[dict]) -> str:
    """A small self-contained SVG of loss and accuracy per epoch."""
    width, height, pad = 560, 260, 40
    series = [(k, c) for k, c in (("loss", "#d62728"), ("val_loss", "#ff9896"),
                                  ("accuracy", "#1f77b4"), ("val_accuracy", "#aec7e8"))
              if history and k in history[0]]
    peak = max([1.0] + [h[k] for h in history for k, _ in series if k in h])
    epochs = max(1, len(history) - 1)

    def point(i: int, value: float) -> str:
        x = pad + (width - 2 * pad) * i / epochs
        y = height - pad - (height - 2 * pad) * value / peak
        return f"{x:.1f},{y:.1f}"

    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
             f'<text x="{width / 2}" y="{height - 10}" text-anchor="middle">epoch (1..{len(history)})</text>',
             f'<text x="5" y="{pad - 8}">max {peak:.3g}</text>']
    for n, (key, colour) in enumerate(series):
        points = " ".join(point(i, h[key]) for i, h in enumerate(history) if key in h)
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        lines.append(f'<text x="{width - pad - 90}" y="{pad + 14 * n}" fill="{colour}">{key}</text>')
    lines.append("</svg>")
    return "\n".join(lines)
