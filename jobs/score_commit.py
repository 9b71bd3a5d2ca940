"""A plain score run's rows -> tables mapping, after the accounting check.

The staged Parquet holds one row per decoded example (an image, a frame, a window)
and one row per failed object. Committing splits it into the example table, the
per-object table (majority label and mean class scores, for videos and audio files)
and `errors`, each replacing the previous run's version of that Delta table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from jobs.runs.contract import ERRORS_SCHEMA, SCORED_AT
from jobs.runs.lifecycle import Run, TableWrite
from jobs.storage import StoredObject

PARTIAL = "decode-partial"  # an errors row for an object whose examples were still scored


def staged_schema(position_columns: tuple[str, ...]):
    import pyarrow as pa

    positions = [(name, pa.int64() if name.endswith("_index") else pa.float64()) for name in position_columns]
    return pa.schema([("uri", pa.string()), *positions, ("label", pa.string()), ("score", pa.float32()),
                      ("top_labels", pa.list_(pa.string())), ("top_scores", pa.list_(pa.float32())),
                      ("probabilities", pa.list_(pa.float32())), ("object_info", pa.string()),
                      ("model_id", pa.string()), ("run_id", pa.string()), ("stage", pa.string()),
                      ("error", pa.string()), ("node_id", pa.string()), ("etag", pa.string()),
                      ("scored_at", SCORED_AT())])


def example_columns(task) -> list[str]:
    return ["uri", "etag", *task.position_columns, "label", "score", "top_labels", "top_scores", "model_id", "run_id",
            "scored_at"]


@dataclass
class Committed:
    tables: list[str]
    scored_objects: int
    failed_objects: int
    partial_objects: int
    example_rows: int
    rows_per_node: dict[str, int]  # staged rows per Ray Node that scored them (the actor pool's spread)
    versions: dict[str, int]  # each table's Delta version holding this run


def commit_run(run: Run, task, media: str, class_names: list[str], listed: dict[str, StoredObject]) -> Committed:
    """Check the accounting invariant over the staged rows, then replace each of the task's
    tables with this run's rows (one Delta commit each: readers see the previous run or
    this one, whole). The staged rows stay until the run finishes.

    Raises:
        JobFailedError: when an object is missing, unexpected or both scored and failed;
            nothing is committed then and the staged rows are kept for inspection.
        RunFencedError: the run lost its lease before or during the commit.
    """
    import pyarrow.compute as pc

    staged = run.staged_rows()
    is_example = pc.field("error").is_null()
    is_failure = pc.field("error").is_valid() & (pc.field("stage") != PARTIAL)
    scored = set(staged.to_table(columns=["uri"], filter=is_example).column("uri").to_pylist())
    failed = staged.to_table(columns=["uri"], filter=is_failure).column("uri").to_pylist()
    partial = set(staged.to_table(columns=["uri"], filter=pc.field("stage") == PARTIAL).column("uri").to_pylist())
    run.check_accounting(listed, [*scored, *failed], extra={"partial without examples": len(partial - scored)})

    example_rows = staged.count_rows(filter=is_example)
    per_node = staged.to_table(columns=["node_id"]).column("node_id").value_counts().to_pylist()
    examples_table, objects_table = task.output_tables
    writes = [TableWrite(examples_table, lambda: staged.scanner(columns=example_columns(task), filter=is_example)
                         .to_reader()),
              TableWrite("errors", lambda: errors_rows(staged.to_table(filter=pc.field("error").is_valid()),
                                                       listed, media))]
    if objects_table:
        writes.append(TableWrite(objects_table, lambda: _object_rows(staged, is_example, task, class_names)))
    versions = run.commit(writes)
    return Committed([w.name for w in writes], len(scored), len(failed), len(partial), example_rows,
                     {str(entry["values"]): entry["counts"] for entry in per_node}, versions)


def errors_rows(staged_errors, listed: dict[str, StoredObject], media: str):
    """The errors table of a plain run (the one schema of every job kind's errors)."""
    import pyarrow as pa

    rows = staged_errors.to_pylist()
    return pa.Table.from_pylist([
        {"uri": r["uri"], "etag": r["etag"], "size": listed[r["uri"]].size if r["uri"] in listed else None,
         "modality": media, "route": None, "stage": r["stage"], "error": r["error"],
         "seconds": _info(r).get("seconds"), "model_id": r["model_id"], "run_id": r["run_id"],
         "scored_at": r["scored_at"], "superseded_on": None} for r in rows], schema=ERRORS_SCHEMA())


def _info(row: dict) -> dict:
    try:
        return json.loads(row.get("object_info") or "{}")
    except ValueError:
        return {}


def _object_rows(staged, row_filter, task, class_names):
    """One row per object: majority label (ties broken by mean score), mean scores per class."""
    import numpy as np
    import pyarrow as pa
    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, np.ndarray] = {}
    votes: dict[str, np.ndarray] = {}
    info: dict[str, str] = {}
    model_id = run_id = ""
    etags: dict[str, str] = {}
    scored_at: dict[str, object] = {}
    columns = ["uri", "probabilities", "object_info", "model_id", "run_id", "etag", "scored_at"]
    for batch in staged.to_batches(columns=columns, filter=row_filter):
        for uri, probs, object_info, model, run, etag, when in zip(*(batch.column(i).to_pylist()
                                                                      for i in range(len(columns)))):
            vector = np.asarray(probs, dtype=np.float64)
            if uri not in sums:
                sums[uri], votes[uri] = np.zeros_like(vector), np.zeros_like(vector)
            sums[uri] += vector
            votes[uri][int(vector.argmax())] += 1
            counts[uri] += 1
            info.setdefault(uri, object_info)
            etags.setdefault(uri, etag)
            scored_at[uri] = max(scored_at.get(uri, when), when)
            model_id, run_id = model, run
    uris = sorted(counts)
    means = [sums[u] / counts[u] for u in uris]
    labels = []
    for uri, mean in zip(uris, means):
        tally = votes[uri]
        tied = np.flatnonzero(tally == tally.max())
        labels.append(class_names[int(tied[np.argmax(mean[tied])])])
    durations = [json.loads(info[u] or "{}").get("duration_s") for u in uris]
    return pa.table({
        "uri": uris, "etag": pa.array([etags[u] for u in uris], pa.string()), "label": labels,
        "score": pa.array([float(m[class_names.index(lab)]) for m, lab in zip(means, labels)], pa.float32()),
        "mean_scores": pa.array([dict(zip(class_names, map(float, m))) for m in means],
                                pa.map_(pa.string(), pa.float32())),
        task.count_column: pa.array([counts[u] for u in uris], pa.int64()),
        "duration_s": pa.array(durations, pa.float64()),
        "model_id": pa.array([model_id] * len(uris), pa.string()), "run_id": pa.array([run_id] * len(uris), pa.string()),
        "scored_at": pa.array([scored_at[u] for u in uris], SCORED_AT()),
    })
