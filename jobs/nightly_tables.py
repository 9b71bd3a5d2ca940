"""The data contract of incremental score jobs: the tables a run date publishes, their
pinned schemas (tests/test_data_contract.py), and how staged classifier rows become them.
Pure pyarrow/numpy on the driver; no Ray, no storage except `stage_table`.

Under the job's output, one Delta table per name, partitioned by `run_date` (hive-style
folders `<table>/run_date=YYYY-MM-DD/`), each date one commit per table:

- predictions: one row per object scored (images, videos, audio files alike), its label
  (for video/audio, the majority over frames/windows), score and top-k;
- frames / windows: one row per sampled video frame / audio window;
- errors: one row per object that failed, with the stage and the reason;
- skipped: one row per object no route takes, with the reason.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from jobs.manifest import ERROR, PREDICTED
from jobs.runs.contract import ERRORS_SCHEMA, SCORED_AT, now_utc
from jobs.score_commit import PARTIAL

if TYPE_CHECKING:
    from jobs.nightly_routes import RoutePlan

TABLES = ("predictions", "frames", "windows", "errors", "skipped")
DETAIL_TABLE = {"video": "frames", "audio": "windows"}  # per-example rows of multi-example media
PART_ROWS = 1_000_000  # rows per published Parquet file
# runs/<run_id>/summary.json, its keys in order.
SUMMARY_FIELDS = ("run_id", "run_date", "spec_name", "input", "output", "started_at", "finished_at", "seconds",
                  "listed", "objects_per_s", "counts", "skipped", "resumed", "decisions", "model_ids", "error_rate",
                  "max_error_rate", "error_budget_exceeded", "tables")


def route_tables(route: RoutePlan, rows: list[dict], wanted: dict, run_id: str, k: int):
    """predictions (one row per object), the detail table (frames/windows) and errors of one
    route's staged rows, and each object's ledger outcome."""
    import pyarrow as pa

    examples: dict[str, list[dict]] = defaultdict(list)
    warnings: dict[str, str] = {}
    failures: dict[str, dict] = {}
    for row in rows:
        if row["error"] is None:
            examples[row["uri"]].append(row)
        elif row["stage"] == PARTIAL:
            warnings[row["uri"]] = row["error"]
        else:
            failures[row["uri"]] = row
    predictions = []
    for uri, object_rows in examples.items():
        label, score, top_labels, top_scores = object_label(object_rows, route.class_names, k)
        etag, size, _ = wanted[uri]
        predictions.append({
            "uri": uri, "etag": etag, "size": size, "modality": route.media, "route": route.name, "label": label,
            "score": score, "top_labels": top_labels, "top_scores": top_scores, "examples": len(object_rows),
            "seconds": _seconds(object_rows[0]), "warning": warnings.get(uri),
            "model_id": route.model_id, "run_id": run_id, "scored_at": max(r["scored_at"] for r in object_rows)})
    errors = [{"uri": uri, "etag": wanted[uri][0], "size": wanted[uri][1], "modality": route.media,
               "route": route.name, "stage": row["stage"], "error": row["error"], "seconds": _seconds(row),
               "model_id": route.model_id, "run_id": run_id, "scored_at": row["scored_at"]}
              for uri, row in failures.items()]
    detail = None
    if route.media in DETAIL_TABLE:
        schema = SCHEMAS[DETAIL_TABLE[route.media]]()
        detail = pa.Table.from_pylist([{**r, "run_id": run_id} for rs in examples.values() for r in rs],
                                      schema=schema) if examples else None
    outcomes = {uri: (PREDICTED, "") for uri in examples}
    outcomes.update({uri: (ERROR, row["stage"]) for uri, row in failures.items()})
    return (pa.Table.from_pylist(predictions, schema=SCHEMAS["predictions"]()),
            detail, pa.Table.from_pylist(errors, schema=SCHEMAS["errors"]()), outcomes)


def object_label(rows: list[dict], class_names: list[str], k: int):
    """One label per object: the majority of its examples' labels (ties broken by the mean
    class scores); its score and top-k are the mean class scores. An image has one example."""
    means = np.mean([np.asarray(r["probabilities"], dtype=np.float64) for r in rows], axis=0)
    votes = np.bincount([int(np.argmax(r["probabilities"])) for r in rows], minlength=len(means))
    tied = np.flatnonzero(votes == votes.max())
    best = int(tied[np.argmax(means[tied])])
    order = np.argsort(-means)[:k]
    return (class_names[best], float(means[best]), [class_names[i] for i in order],
            [float(means[i]) for i in order])


def _seconds(row: dict) -> float | None:
    try:
        return json.loads(row.get("object_info") or "{}").get("seconds")
    except ValueError:
        return None


def stage_table(table, location, fs) -> None:
    """The table as `part-NNNNN.parquet` files of at most PART_ROWS rows under `location`
    (a date's staging, read again when it is published).

    File names depend only on the row order, so staging a date again replaces the files."""
    import pyarrow.parquet as pq

    if location.scheme == "file":
        fs.create_dir(location.fs_path, recursive=True)
    for i, start in enumerate(range(0, table.num_rows, PART_ROWS)):
        pq.write_table(table.slice(start, PART_ROWS), f"{location.fs_path}/part-{i:05d}.parquet", filesystem=fs,
                       compression="zstd")


# The data contract: the columns of each table, in order (run_date is the partition folder).
def _schemas():
    import pyarrow as pa

    prediction = [("label", pa.string()), ("score", pa.float32()), ("top_labels", pa.list_(pa.string())),
                  ("top_scores", pa.list_(pa.float32()))]
    stamps = [("model_id", pa.string()), ("run_id", pa.string()), ("scored_at", SCORED_AT())]
    return {
        "predictions": pa.schema([("uri", pa.string()), ("etag", pa.string()), ("size", pa.int64()),
                                  ("modality", pa.string()), ("route", pa.string()), *prediction,
                                  ("examples", pa.int32()), ("seconds", pa.float32()), ("warning", pa.string()),
                                  *stamps]),
        "frames": pa.schema([("uri", pa.string()), ("frame_index", pa.int64()), ("timestamp_s", pa.float64()),
                             *prediction, *stamps]),
        "windows": pa.schema([("uri", pa.string()), ("window_start_s", pa.float64()), ("window_end_s", pa.float64()),
                              *prediction, *stamps]),
        "errors": ERRORS_SCHEMA(),  # every job kind's
        "skipped": pa.schema([("uri", pa.string()), ("etag", pa.string()), ("size", pa.int64()),
                              ("reason", pa.string()), *stamps]),
    }


SCHEMAS = {name: (lambda name=name: _schemas()[name]) for name in TABLES}
SORT_KEYS = {"predictions": ["uri"], "frames": ["uri", "frame_index"], "windows": ["uri", "window_start_s"],
             "errors": ["uri"], "skipped": ["uri"]}


def skipped_table(entries, run_id: str):
    """The skipped table of a run: one row per object no route takes (`stage` holds why; no
    model, so no `model_id`)."""
    import pyarrow as pa

    when = now_utc()
    return pa.Table.from_pylist([{"uri": e.uri, "etag": e.etag, "size": e.size, "reason": e.stage, "model_id": None,
                                  "run_id": run_id, "scored_at": when} for e in entries], schema=SCHEMAS["skipped"]())


def assemble_tables(parts: dict[str, list]) -> dict:
    """Each table of the contract from its pieces (one per route), cast to its pinned schema
    and sorted by its keys; a table without rows is empty, never missing."""
    import pyarrow as pa

    tables = {}
    for name in TABLES:
        schema = SCHEMAS[name]()
        pieces = [t.select(schema.names).cast(schema) for t in parts.get(name, []) if t.num_rows]
        tables[name] = pa.concat_tables(pieces) if pieces else schema.empty_table()
        if tables[name].num_rows:
            tables[name] = tables[name].sort_by([(c, "ascending") for c in SORT_KEYS[name]])
    return tables


__all__ = ["DETAIL_TABLE", "PART_ROWS", "SCHEMAS", "SORT_KEYS", "SUMMARY_FIELDS", "TABLES", "assemble_tables",
           "object_label", "route_tables", "skipped_table", "stage_table"]
