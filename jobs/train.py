"""The training runner: a train spec to a Ray Train `TensorflowTrainer` job under MWMS.

Data flow: list class folders (labels = sorted folder names) -> Ray Data fetch+decode
(materialized once, uint8) -> `streaming_split` to workers -> each worker builds the
model under `MultiWorkerMirroredStrategy`, fits one epoch at a time, evaluates, and
saves a checkpoint (every rank saves: MWMS save is collective; only rank 0's is
reported) -> Ray Train persists checkpoints under `<output>/train/` -> the driver
exports the best-known final model to `<output>/model/` with `metadata.json`.

Re-running a spec whose output already holds checkpoints resumes from the latest
(Ray Train V2 restores the run named `train` under the output URI).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.errors import JobFailedError, MediaJobsError
from jobs.model_store import METADATA_FILE, MODEL_DIR, MODEL_FILE
from jobs.media_stage import EXAMPLE, fetch_and_decode
from jobs.task_config import task_config_for
from jobs.storage import ensure_bucket, filesystem_for, list_objects, parse_uri, upload_file, write_bytes

log = logging.getLogger(__name__)

RUN_NAME = "train"  # Ray Train run folder under the output URI (checkpoints live here)


@dataclass(frozen=True)
class LabelledObjects:
    uris: list[str]
    sizes: list[int]
    labels: list[int]
    class_names: list[str]


def list_labelled(uri: str, suffixes: tuple[str, ...], class_names: list[str] | None = None,
                  field: str = "data.train") -> LabelledObjects:
    """List media objects in class-named folders: `<uri>/<class>/<...>/<file>`.

    Args:
        uri: the prefix holding one folder per class.
        class_names: the training classes, to map validation folders to the same ids.
        field: the spec field, for error messages.

    Raises:
        MediaJobsError: no images, fewer than 2 classes, or a class the model does not know.
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
    return LabelledObjects([u for u, _, _ in found], [s for _, s, _ in found],
                           [index[c] for _, _, c in found], list(class_names))


def _decoded_dataset(objects: LabelledObjects, task: Any, seed: int):
    import ray.data

    items = [{"uri": u, "size": s, "label": lab} for u, s, lab in zip(objects.uris, objects.sizes, objects.labels)]
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


def run_train(spec, echo=print) -> TrainResult:
    """Train the spec's model on the cluster `ray` is connected to; export it to the output."""
    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from tasks import get_task

    started = time.time()
    task_config = task_config_for(spec)
    task = get_task(spec.task)(**task_config)
    output = parse_uri(spec.output).as_prefix()
    ensure_bucket(output.uri)

    train_objects = list_labelled(spec.data.train, task.suffixes)
    if spec.model.architecture == "binary-cnn" and len(train_objects.class_names) != 2:
        raise MediaJobsError(f"model.architecture: binary-cnn needs exactly 2 class folders, found "
                             f"{train_objects.class_names} under {spec.data.train}; use cifar10-cnn")
    val_objects = (list_labelled(spec.data.validation, task.suffixes, train_objects.class_names, "data.validation")
                   if spec.data.validation else None)
    echo(f"training data: {len(train_objects.uris)} objects in {len(train_objects.class_names)} classes "
         f"{train_objects.class_names}" + (f"; validation: {len(val_objects.uris)} objects" if val_objects else ""))

    datasets = {"train": _decoded_dataset(train_objects, task, spec.training.seed)}
    examples = datasets["train"].count()
    skipped = len(train_objects.uris) - len(datasets["train"].unique("uri"))
    if val_objects:
        datasets["validation"] = _decoded_dataset(val_objects, task, spec.training.seed)
        skipped += len(val_objects.uris) - len(datasets["validation"].unique("uri"))
    if skipped:
        echo(f"warning: {skipped} objects could not be decoded and were left out of training")
    if examples // spec.resources.num_workers < spec.training.batch_size:
        raise MediaJobsError(
            f"training.batch_size: {spec.training.batch_size} is larger than each worker's share of the "
            f"{examples} decoded training examples ({examples // spec.resources.num_workers}); "
            "lower training.batch_size or resources.num_workers")

    fs = filesystem_for(output)
    config = {
        "task": task, "architecture": spec.model.architecture, "num_classes": len(train_objects.class_names),
        "epochs": spec.training.epochs, "batch_size": spec.training.batch_size,
        "learning_rate": spec.training.learning_rate, "class_names": train_objects.class_names,
        "has_validation": val_objects is not None,
    }
    resources = {"CPU": spec.resources.cpus_per_worker}
    if spec.resources.use_gpu:
        resources["GPU"] = 1
    trainer = TensorflowTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=spec.resources.num_workers, use_gpu=spec.resources.use_gpu,
                                     resources_per_worker=resources),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
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
        raise JobFailedError(f"training failed: {_root_cause(exc)}") from exc
    if result.checkpoint is None:
        raise JobFailedError("training finished without a checkpoint; see the worker logs above")

    with result.checkpoint.as_directory() as checkpoint_dir:
        state = json.loads((Path(checkpoint_dir) / "state.json").read_text())
        model_path = Path(checkpoint_dir) / MODEL_FILE
        model_id = f"{spec.name}-{_file_digest(model_path)[:12]}"
        metadata = {
            "model_id": model_id, "task": spec.task, "architecture": spec.model.architecture,
            "task_config": task_config, "input_shape": list(task.example_shape),
            "class_names": train_objects.class_names,
            "epochs": state["epoch"] + 1, "metrics": state["metrics"], "history": state["history"],
            "examples": examples, "skipped": skipped, "spec_name": spec.name,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        model_dir = output.join(MODEL_DIR)
        upload_file(model_path, model_dir.join(MODEL_FILE).uri)
        write_bytes(model_dir.join(METADATA_FILE).uri, json.dumps(metadata, indent=2).encode())
        write_bytes(model_dir.join("training_curve.svg").uri, training_curve_svg(state["history"]).encode())
    return TrainResult(model_dir.uri + "/", state["metrics"], train_objects.class_names, state["epoch"] + 1,
                       examples, skipped, time.time() - started)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


def train_loop_per_worker(config: dict) -> None:
    """Runs on every Ray Train worker. TF_CONFIG is set by Ray Train for MWMS."""
    import ray.train
    import tensorflow as tf

    enable_gpu_memory_growth(tf)
    tf.get_logger().setLevel("ERROR")  # MWMS logs every collective at INFO
    context = ray.train.get_context()
    rank = context.get_world_rank()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    history: list[dict] = []
    start_epoch = 0
    checkpoint = ray.train.get_checkpoint()
    with strategy.scope():
        if checkpoint is not None:
            with checkpoint.as_directory() as checkpoint_dir:
                model = tf.keras.models.load_model(os.path.join(checkpoint_dir, MODEL_FILE))
                state = json.loads(Path(checkpoint_dir, "state.json").read_text())
            start_epoch, history = state["epoch"] + 1, state["history"]
            if rank == 0:
                print(f"resuming from checkpoint after epoch {start_epoch}", flush=True)
        else:
            model = config["task"].build_model(config["architecture"], config["num_classes"],
                                               config["learning_rate"])

    batch_size = config["batch_size"]
    # drop_last: under MWMS each global batch is split across replicas, and a final
    # batch smaller than the replica count leaves a replica an empty batch, which
    # fails inside the convolution kernels. The local shuffle varies what is dropped.
    train_data = ray.train.get_dataset_shard("train").to_tf(
        feature_columns=EXAMPLE, label_columns="label", batch_size=batch_size, drop_last=True,
        local_shuffle_buffer_size=batch_size * 8)
    validation = ray.train.get_dataset_shard("validation") if config["has_validation"] else None

    for epoch in range(start_epoch, config["epochs"]):
        began = time.time()
        fit = model.fit(train_data, epochs=1, verbose=0)
        metrics = {"epoch": epoch + 1, "loss": float(fit.history["loss"][-1]),
                   "accuracy": float(fit.history["accuracy"][-1])}
        if validation is not None:
            metrics.update(evaluate_examples(model, validation, batch_size, config["architecture"]))
        metrics["epoch_seconds"] = round(time.time() - began, 2)
        history.append(metrics)
        with tempfile.TemporaryDirectory() as checkpoint_dir:
            # Every rank must save: MWMS saving runs collective ops (FACTS.md), and a
            # rank that skips it leaves the others waiting forever.
            model.save(os.path.join(checkpoint_dir, MODEL_FILE))
            Path(checkpoint_dir, "state.json").write_text(
                json.dumps({"epoch": epoch, "metrics": metrics, "history": history}))
            if rank == 0:
                print("epoch " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in metrics.items()), flush=True)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint_dir))
            else:
                ray.train.report(metrics)


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
