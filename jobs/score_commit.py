"""Publishing a scoring run: staged rows -> the task's tables, after the accounting check.

The staged Parquet holds one row per decoded example (an image, a frame, a window)
and one row per failed object. Committing splits it into the example table, the
per-object table (majority label and mean class scores, for videos and audio files)
and `errors/`, replacing the previous run's tables.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from jobs.errors import JobFailedError
from jobs.storage import delete_prefix, filesystem_for, needs_folders

PARTIAL = "decode-partial"  # an errors row for an object whose examples were still scored


def staged_schema(position_columns: tuple[str, ...]):
    import pyarrow as pa

    positions = [(name, pa.int64() if name.endswith("_index") else pa.float64()) for name in position_columns]
    return pa.schema([("uri", pa.string()), *positions, ("label", pa.string()), ("score", pa.float32()),
                      ("top_labels", pa.list_(pa.string())), ("top_scores", pa.list_(pa.float32())),
                      ("probabilities", pa.list_(pa.float32())), ("object_info", pa.string()),
                      ("model_id", pa.string()), ("run_id", pa.string()), ("stage", pa.string()),
                      ("error", pa.string()), ("node_id", pa.string()), ("etag", pa.string())])


def example_columns(task) -> list[str]:
    return ["uri", *task.position_columns, "label", "score", "top_labels", "top_scores", "model_id", "run_id"]


ERROR_COLUMNS = ["uri", "stage", "error", "run_id"]


@dataclass
class Committed:
    tables: list[str]
    scored_objects: int
    failed_objects: int
    partial_objects: int
    example_rows: int
    rows_per_node: dict[str, int]  # staged rows per Ray node that scored them (the actor pool's spread)


def commit_run(output, staging, run_id: str, task, class_names: list[str], expected: set[str],
               publishing=lambda: None) -> Committed:
    """Check the accounting invariant, then write the tables (calling `publishing()` before
    the first change to them). The staged rows stay: the caller drops them once this
    returns, so a commit cut short can run again from the top.

    Raises:
        JobFailedError: when an object is missing, unexpected or both scored and failed;
            nothing is published then and the staged rows are kept for inspection.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    fs = filesystem_for(output)
    staged = pads.dataset(staging.fs_path, filesystem=fs, format="parquet")
    is_example = pc.field("error").is_null()
    is_failure = pc.field("error").is_valid() & (pc.field("stage") != PARTIAL)
    scored = set(staged.to_table(columns=["uri"], filter=is_example).column("uri").to_pylist())
    failed_rows = staged.to_table(columns=["uri"], filter=is_failure).column("uri").to_pylist()
    failed = set(failed_rows)
    partial = set(staged.to_table(columns=["uri"], filter=pc.field("stage") == PARTIAL).column("uri").to_pylist())
    problems = {
        "missing": expected - scored - failed, "unexpected": (scored | failed) - expected,
        "both scored and failed": scored & failed, "failed twice": len(failed_rows) - len(failed),
        "partial without examples": partial - scored,
    }
    if any(problems.values()):
        detail = ", ".join(f"{name}: {len(v) if isinstance(v, set) else v}" for name, v in problems.items() if v)
        raise JobFailedError(f"accounting check failed for run {run_id} ({detail}); nothing was committed, "
                             f"the staged rows are under {staging.uri}/")

    example_rows = staged.count_rows(filter=is_example)
    per_node = staged.to_table(columns=["node_id"]).column("node_id").value_counts().to_pylist()
    examples_table, objects_table = task.output_tables
    tables = [examples_table, "errors"] + ([objects_table] if objects_table else [])
    publishing()
    for table in tables:
        delete_prefix(output.join(table).uri)
    publish_rows(staged, is_example, example_columns(task), output.join(examples_table), fs, run_id)
    publish_rows(staged, pc.field("error").is_valid(), ERROR_COLUMNS, output.join("errors"), fs, run_id)
    if objects_table:
        _write_objects(staged, is_example, task, class_names, output.join(objects_table), fs, run_id)
    return Committed(tables, len(scored), len(failed), len(partial), example_rows,
                     {str(entry["values"]): entry["counts"] for entry in per_node})


def publish_rows(staged, row_filter, columns, location, fs, run_id: str) -> None:
    import pyarrow.dataset as pads

    if staged.count_rows(filter=row_filter):
        pads.write_dataset(staged.scanner(columns=columns, filter=row_filter), location.fs_path, filesystem=fs,
                           format="parquet", basename_template=f"part-{run_id}-{{i}}.parquet",
                           existing_data_behavior="overwrite_or_ignore", create_dir=needs_folders(location))


def _write_objects(staged, row_filter, task, class_names, location, fs, run_id: str) -> None:
    """One row per object: majority label (ties broken by mean score), mean scores per class."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, np.ndarray] = {}
    votes: dict[str, np.ndarray] = {}
    info: dict[str, str] = {}
    model_id = ""
    for batch in staged.to_batches(columns=["uri", "probabilities", "object_info", "model_id"], filter=row_filter):
        for uri, probs, object_info, model in zip(*(batch.column(i).to_pylist() for i in range(4))):
            vector = np.asarray(probs, dtype=np.float64)
            if uri not in sums:
                sums[uri], votes[uri] = np.zeros_like(vector), np.zeros_like(vector)
            sums[uri] += vector
            votes[uri][int(vector.argmax())] += 1
            counts[uri] += 1
            info.setdefault(uri, object_info)
            model_id = model
    if not counts:
        return
    uris = sorted(counts)
    means = [sums[u] / counts[u] for u in uris]
    labels = []
    for uri, mean in zip(uris, means):
        tally = votes[uri]
        tied = np.flatnonzero(tally == tally.max())
        labels.append(class_names[int(tied[np.argmax(mean[tied])])])
    durations = [json.loads(info[u] or "{}").get("duration_s") for u in uris]
    table = pa.table({
        "uri": uris, "label": labels,
        "score": pa.array([float(m[class_names.index(lab)]) for m, lab in zip(means, labels)], pa.float32()),
        "mean_scores": pa.array([dict(zip(class_names, map(float, m))) for m in means],
                                pa.map_(pa.string(), pa.float32())),
        task.count_column: pa.array([counts[u] for u in uris], pa.int64()),
        "duration_s": pa.array(durations, pa.float64()),
        "model_id": [model_id] * len(uris), "run_id": [run_id] * len(uris),
    })
    if needs_folders(location):
        fs.create_dir(location.fs_path, recursive=True)
    pq.write_table(table, f"{location.fs_path}/part-{run_id}-0.parquet", filesystem=fs)
