"""The training runner: a train spec to a Ray Train `TensorflowTrainer` job under MWMS.

Data flow: list the task's objects (class folders for classifiers; see
`jobs.train_plans` for GAN and style transfer) -> Ray Data fetch+decode (materialized
once, uint8) -> `streaming_split` of `train` to workers -> each worker builds the model
under `MultiWorkerMirroredStrategy`, fits one epoch at a time, evaluates, and saves a
checkpoint (every rank saves: MWMS save is collective; only rank 0's is reported) ->
Ray Train persists checkpoints under `<output>/train/` -> the driver exports the
final model (the plan's files) as `<output>/model/versions/<model_id>/` with `metadata.json`
(each file's digest) and moves `<output>/model/LATEST` to it (`jobs.model_export`).

Re-running a spec whose output already holds checkpoints resumes from the latest
(Ray Train V2 restores the run named `train` under the output URI).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.errors import JobFailedError, MediaJobsError, root_cause
from jobs.media_stage import EXAMPLE, fetch_and_decode
from jobs.model_export import export_model
from jobs.resources import scaling_config
from jobs.runs.output_check import prepare_output
from jobs.storage import filesystem_for, parse_uri, write_bytes
from jobs.task_config import task_config_for
from jobs.train_plans import extra_metadata, plan_for

log = logging.getLogger(__name__)

RUN_NAME = "train"  # Ray Train run folder under the output URI (checkpoints live here)
WORKERS_DIR = "workers"  # one placement record per training worker (rank, node, devices)


def _decoded_dataset(uris: list[str], sizes: list[int], labels: list[int], task: Any, seed: int):
    import ray.data

    items = [{"uri": u, "size": s, "label": lab} for u, s, lab in zip(uris, sizes, labels)]
    blocks = max(2, min(len(items) // 64, 200))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(fetch_and_decode, fn_kwargs={"task": task, "keep_errors": False},
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


def run_train(spec, echo=print) -> TrainResult:
    """Train the spec's model on the cluster `ray` is connected to; export it to the output."""
    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.tensorflow import TensorflowTrainer

    from tasks import get_task

    started = time.time()
    output = prepare_output(spec.output)
    task_config = task_config_for(spec)
    task = get_task(spec.task)(**task_config)

    plan = plan_for(spec.task)
    objects = plan.list_objects(spec, task)
    echo(f"training data: {objects.describe()}")

    datasets, decoded, skipped = {}, {}, 0
    for name, uris in objects.uris.items():
        datasets[name] = _decoded_dataset(uris, objects.sizes[name], objects.labels[name], task, spec.training.seed)
        decoded[name] = datasets[name].count()
        skipped += len(uris) - (len(datasets[name].unique("uri")) if decoded[name] else 0)
    examples = decoded["train"]
    if skipped:
        echo(f"warning: {skipped} objects could not be decoded and were left out of training")
    plan.check_decoded(decoded)
    if examples // spec.resources.num_workers < spec.training.batch_size:
        raise MediaJobsError(
            f"training.batch_size: {spec.training.batch_size} is larger than each worker's share of the "
            f"{examples} decoded training examples ({examples // spec.resources.num_workers}); "
            "lower training.batch_size or resources.num_workers")

    fs = filesystem_for(output)
    config = {
        "task": task, "architecture": spec.model.architecture, "epochs": spec.training.epochs,
        "batch_size": spec.training.batch_size, "learning_rate": spec.training.learning_rate,
        "class_names": objects.class_names, "datasets": sorted(datasets), "output": output.uri,
        "seed": spec.training.seed,
        # Each worker's share of the decoded examples: small shards are served from memory.
        "shard_bytes": datasets["train"].size_bytes() // spec.resources.num_workers,
    }
    trainer = TensorflowTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config=config,
        scaling_config=scaling_config(spec.resources),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=list(plan.split)),
        run_config=RunConfig(
            name=RUN_NAME, storage_path=output.fs_path.rstrip("/"), storage_filesystem=fs,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=spec.training.max_failures),
        ),
    )
    echo(f"training {spec.model.architecture} on {spec.resources.num_workers} workers "
         f"(MultiWorkerMirroredStrategy), {spec.training.epochs} epochs; checkpoints under {output.join(RUN_NAME).uri}/")
    try:
        result = trainer.fit()
    except MediaJobsError:
        raise
    except Exception as exc:  # noqa: BLE001 - Ray wraps worker failures; show their root cause
        raise JobFailedError(f"training failed: {root_cause(exc)}") from exc
    if result.checkpoint is None:
        raise JobFailedError("training finished without a checkpoint; see the worker logs above")

    workers = read_placements(output, spec.resources.num_workers)
    with result.checkpoint.as_directory() as checkpoint_dir:
        state = json.loads((Path(checkpoint_dir) / "state.json").read_text())
        model_id = f"{spec.name}-{_digest(Path(checkpoint_dir) / plan.exported[0])[:12]}"
        metadata = {
            "model_id": model_id, "task": spec.task, "architecture": spec.model.architecture,
            "task_config": task_config, "input_shape": list(task.example_shape),
            "class_names": objects.class_names, "files": list(plan.exported),
            "epochs": state["epoch"] + 1, "metrics": state["metrics"], "history": state["history"],
            "examples": examples, "skipped": skipped, "spec_name": spec.name,
            "workers": workers,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra_metadata(spec.task, checkpoint_dir),
        }
        version = export_model(Path(checkpoint_dir), metadata, output.uri,
                               extra={"training_curve.svg": training_curve_svg(state["history"]).encode()})
    return TrainResult(version.uri, state["metrics"], objects.class_names, state["epoch"] + 1,
                       examples, skipped, time.time() - started, workers)


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


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker. TF_CONFIG is set by Ray Train for MWMS."""
    import ray.train
    import tensorflow as tf

    enable_gpu_memory_growth(tf)
    tf.get_logger().setLevel("ERROR")  # MWMS logs every collective at INFO
    context = ray.train.get_context()
    rank = context.get_world_rank()
    _record_placement(config["output"], rank, context.get_world_size())
    # The same seed on every rank: identical initial weights, and reruns that repeat.
    tf.keras.utils.set_random_seed(config.get("seed", 0))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    plan = plan_for(config["task"].name)
    history: list[dict] = []
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    with strategy.scope():
        if checkpoint is not None:
            with checkpoint.as_directory() as checkpoint_dir:
                model = plan.load(checkpoint_dir, config)
                state = json.loads(Path(checkpoint_dir, "state.json").read_text())
            start_epoch, history = state["epoch"] + 1, state["history"]
            if rank == 0:
                print(f"resuming from checkpoint after epoch {start_epoch}", flush=True)
        else:
            model = plan.build(config["task"], config)

    whole = {name: ray.train.get_dataset_shard(name) for name in config["datasets"] if name != "train"}
    train_data = plan.train_data(ray.train.get_dataset_shard("train"), config, whole)

    for epoch in range(start_epoch, config["epochs"]):
        began = time.time()
        fit = model.fit(train_data, epochs=1, verbose=0)
        metrics = {"epoch": epoch + 1, **{name: float(values[-1]) for name, values in fit.history.items()}}
        metrics.update(plan.evaluate(model, whole, config))
        metrics["epoch_seconds"] = round(time.time() - began, 2)
        history.append(metrics)
        with tempfile.TemporaryDirectory() as checkpoint_dir:
            # Every rank must save: MWMS saving runs collective ops (FACTS.md), and a
            # rank that skips it leaves the others waiting forever.
            plan.save(model, checkpoint_dir)
            Path(checkpoint_dir, "state.json").write_text(
                json.dumps({"epoch": epoch, "metrics": metrics, "history": history}))
            if rank == 0:
                print("epoch " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in metrics.items()), flush=True)
                plan.after_epoch(checkpoint_dir, epoch, config)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir))
            else:
                ray.train.report(metrics)


def _record_placement(output_uri: str, rank: int, world_size: int) -> None:
    """Write where this worker runs to `<output>/workers/rank-<rank>.json` (the driver puts
    all of them in metadata.json: which nodes trained, on which devices)."""
    import os
    import socket

    import ray

    runtime = ray.get_runtime_context()
    placement = {"rank": rank, "world_size": world_size, "node_id": runtime.get_node_id(),
                 "hostname": socket.gethostname(), "pid": os.getpid(),
                 "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
    write_bytes(parse_uri(output_uri).join(WORKERS_DIR, f"rank-{rank}.json").uri, json.dumps(placement).encode())


def read_placements(output, world_size: int) -> list[dict]:
    """The placement records of ranks 0..world_size-1 (those that were written)."""
    from jobs.storage import exists, read_bytes

    records = []
    for rank in range(world_size):
        uri = output.join(WORKERS_DIR, f"rank-{rank}.json").uri
        if exists(uri):
            records.append(json.loads(read_bytes(uri)))
    return records


def evaluate_examples(model, shard, batch_size: int, architecture: str) -> dict[str, float]:
    """Exact validation loss and accuracy over the whole (unsplit) validation set.

    The model is called directly rather than through `model.evaluate`: every worker
    holds the full validation set, so no collective is needed, and no batch is dropped.
    """
    import numpy as np

    losses, correct, count = 0.0, 0, 0
    for batch in shard.iter_batches(batch_size=max(batch_size, 256), batch_format="numpy"):
        probabilities = model(batch[EXAMPLE], training=False).numpy().astype(np.float64)
        labels = batch["label"].astype(np.int64)
        if architecture == "binary-cnn":
            p = np.clip(probabilities[:, 0], 1e-7, 1 - 1e-7)
            losses += float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).sum())
            correct += int(((p >= 0.5).astype(np.int64) == labels).sum())
        else:
            picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
            losses += float(-np.log(picked).sum())
            correct += int((probabilities.argmax(axis=1) == labels).sum())
        count += len(labels)
    return {"val_loss": losses / max(count, 1), "val_accuracy": correct / max(count, 1)}


def enable_gpu_memory_growth(tf) -> None:
    # Without this TensorFlow grabs all GPU memory in every worker process.
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised: growth can only be set before first use


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
