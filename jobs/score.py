"""The scoring runner: a score spec to a Ray Data batch-inference pipeline.

Data flow: list the input prefix (every object, paged) -> `from_items` -> fetch+decode
tasks (per-object try/except: bad objects become error rows) -> classifier actor pool
(model loaded once per actor, large batches) -> Parquet rows under a staging prefix ->
commit: `predictions/` (decoded and scored) and `errors/` (uri, stage, error), then
`runs/<run_id>/summary.json`. Every listed object lands in exactly one of the two,
and the commit checks it.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass

import numpy as np

from jobs.errors import JobFailedError, MediaJobsError
from jobs.media_stage import fetch_and_decode
from jobs.model_store import load_keras_model, read_model_metadata
from jobs.storage import delete_prefix, ensure_bucket, filesystem_for, list_objects, parse_uri, write_bytes

PREDICTION_COLUMNS = ["uri", "label", "score", "top_labels", "top_scores", "model_id", "run_id"]
ERROR_COLUMNS = ["uri", "stage", "error", "run_id"]


def prediction_schema():
    import pyarrow as pa

    return pa.schema([("uri", pa.string()), ("label", pa.string()), ("score", pa.float32()),
                      ("top_labels", pa.list_(pa.string())), ("top_scores", pa.list_(pa.float32())),
                      ("model_id", pa.string()), ("run_id", pa.string()), ("stage", pa.string()),
                      ("error", pa.string())])


class BatchClassifier:
    """A Ray Data actor: loads the model once, classifies decoded batches.

    Rows that failed decoding pass through with their error, so one table carries
    every object to the commit step.
    """

    def __init__(self, model_uri: str, top_k: int, run_id: str) -> None:
        import tensorflow as tf

        from jobs.train import _enable_gpu_memory_growth

        _enable_gpu_memory_growth(tf)
        self.model, metadata = load_keras_model(model_uri)
        self.class_names = metadata["class_names"]
        self.model_id = metadata["model_id"]
        self.top_k = top_k
        self.run_id = run_id

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        from tasks.image_classifier import top_k

        errors = [str(e) if e else "" for e in batch["error"]]
        ok = np.array([not e for e in errors], dtype=bool)
        n = len(errors)
        rows = [None] * n
        if ok.any():
            probabilities = self.model(batch["image"][ok], training=False).numpy()
            for i, row in zip(np.flatnonzero(ok), top_k(probabilities, self.class_names, self.top_k)):
                rows[i] = row
        return pa.Table.from_pydict({
            "uri": [str(u) for u in batch["uri"]],
            "label": [r["label"] if r else None for r in rows],
            "score": [r["score"] if r else None for r in rows],
            "top_labels": [r["top_labels"] if r else None for r in rows],
            "top_scores": [r["top_scores"] if r else None for r in rows],
            "model_id": [self.model_id] * n,
            "run_id": [self.run_id] * n,
            "stage": [str(s) if e else None for s, e in zip(batch["stage"], errors)],
            "error": [e or None for e in errors],
        }, schema=prediction_schema())


@dataclass
class ScoreResult:
    run_id: str
    model_id: str
    listed: int
    predicted: int
    errors: int
    seconds: float
    predictions_uri: str
    errors_uri: str
    summary_uri: str

    @property
    def throughput(self) -> float:
        return self.listed / self.seconds if self.seconds else 0.0


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def run_score(spec, echo=print) -> ScoreResult:
    """Score every object under `spec.input` with the model at `spec.model`."""
    import ray.data
    from tasks import get_task

    started = time.time()
    metadata = read_model_metadata(spec.model)
    if metadata.get("task") != spec.task:
        raise MediaJobsError(f"task: the model at {spec.model} was trained for task {metadata.get('task')!r}, "
                             f"not {spec.task!r}")
    output = parse_uri(spec.output).as_prefix()
    ensure_bucket(output.uri)
    run_id = new_run_id()
    staging = output.join("_staging", run_id)

    objects = list(list_objects(spec.input))
    if not objects:
        raise MediaJobsError(f"input: no objects under {parse_uri(spec.input).as_prefix().uri}")
    echo(f"scoring {len(objects)} objects from {parse_uri(spec.input).as_prefix().uri} with model "
         f"{metadata['model_id']} (run {run_id})")

    task = get_task(spec.task)(tuple(metadata["input_shape"]))
    items = [{"uri": o.uri, "size": o.size} for o in objects]
    ds = ray.data.from_items(items, override_num_blocks=max(2, min(len(items) // 32, 1000)))
    ds = ds.map_batches(fetch_and_decode, fn_kwargs={"task": task, "keep_errors": True},
                        batch_size=32, batch_format="numpy")
    gpu = spec.resources.num_gpus if spec.resources.use_gpu else 0
    ds = ds.map_batches(BatchClassifier, fn_constructor_kwargs={"model_uri": spec.model, "top_k": spec.top_k,
                                                                "run_id": run_id},
                        batch_size=spec.batch_size, batch_format="numpy", concurrency=spec.resources.concurrency,
                        num_gpus=gpu or None)
    fs = filesystem_for(output)
    ds.write_parquet(staging.fs_path, filesystem=fs)

    counts = _commit(output, staging, run_id, expected={o.uri for o in objects})
    seconds = time.time() - started
    result = ScoreResult(run_id, metadata["model_id"], len(objects), counts["predicted"], counts["errors"],
                         seconds, output.join("predictions").uri + "/", output.join("errors").uri + "/",
                         output.join("runs", run_id, "summary.json").uri)
    summary = {**asdict(result), "spec_name": spec.name, "task": spec.task, "input": spec.input,
               "throughput_per_s": round(result.throughput, 2),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_bytes(result.summary_uri, json.dumps(summary, indent=2).encode())
    return result


def _commit(output, staging, run_id: str, expected: set[str]) -> dict[str, int]:
    """Split the staged rows into predictions/ and errors/, replacing the previous run's.

    Checks the accounting invariant first: each listed object appears exactly once.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    fs = filesystem_for(output)
    staged = pads.dataset(staging.fs_path, filesystem=fs, format="parquet")
    uris = staged.to_table(columns=["uri"]).column("uri")
    seen = set(uris.to_pylist())
    if len(uris) != len(seen) or seen != expected:
        missing, extra = len(expected - seen), len(seen - expected)
        raise JobFailedError(f"accounting check failed for run {run_id}: {len(uris)} rows for {len(expected)} "
                             f"objects ({missing} missing, {extra} unexpected, {len(uris) - len(seen)} duplicated); "
                             f"nothing was committed, staged rows are under {staging.uri}/")
    for table in ("predictions", "errors"):
        delete_prefix(output.join(table).uri)
    is_error = pc.field("error").is_valid()
    counts = {}
    for table, row_filter, columns in (("predictions", ~is_error, PREDICTION_COLUMNS),
                                       ("errors", is_error, ERROR_COLUMNS)):
        scanner = staged.scanner(columns=columns, filter=row_filter)
        counts[table] = staged.count_rows(filter=row_filter)
        if counts[table]:
            pads.write_dataset(scanner, output.join(table).fs_path, filesystem=fs, format="parquet",
                               basename_template=f"part-{run_id}-{{i}}.parquet",
                               existing_data_behavior="overwrite_or_ignore")
    delete_prefix(staging.uri)
    return {"predicted": counts["predictions"], "errors": counts["errors"]}
