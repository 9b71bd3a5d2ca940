"""The data contract of incremental score jobs: the tables a run date publishes and their
pinned schemas (tests/unit/test_data_contract.py). How staged classifier rows become them:
`jobs.runs.nightly_commit`.

Under the job's output, one Delta table per name, partitioned by `run_date` (hive-style
folders `<table>/run_date=YYYY-MM-DD/`), each date one commit per table:

- predictions: one row per object scored (images, videos, audio files alike), its label
  (for video/audio, the majority over frames/windows), score and top-k;
- frames / windows: one row per sampled video frame / audio window;
- errors: one row per object that failed, with the stage and the reason;
- skipped: one row per object no route takes, with the reason.
"""

from __future__ import annotations

from jobs.storage.contract import ERRORS_SCHEMA, SCORED_AT

TABLES = ("predictions", "frames", "windows", "errors", "skipped")
# runs/<run_id>/summary.json, its keys in order.
SUMMARY_FIELDS = ("run_id", "run_date", "spec_name", "input", "output", "started_at", "finished_at", "seconds",
                  "listed", "objects_per_s", "counts", "skipped", "resumed", "decisions", "model_ids", "error_rate",
                  "max_error_rate", "error_budget_exceeded", "class_mix", "score_bins", "drift", "tables")


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

__all__ = ["SCHEMAS", "SUMMARY_FIELDS", "TABLES"]
