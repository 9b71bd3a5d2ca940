"""The columns every job kind's tables share: `scored_at` on every row, and one `errors` schema.

Every result row carries `run_id`, `model_id` and `scored_at` (when a worker produced it,
UTC); an object that failed is one `errors` row of this schema, whatever the job kind.

The exactly-once contract: every input object has one final outcome per (`uri`, `etag`,
`model_id`) across a job's `predictions` and `errors` tables, where an `errors` row whose
`superseded_on` is set is not final: a later run (a nightly retry of a failed read)
gave that object a newer outcome. Readers take the final outcomes with one filter,
`superseded_on IS NULL`. A model change is a new key: the objects are scored again and
the run's summary counts them as `other-model`.
"""

from __future__ import annotations

__all__ = ["ERRORS_SCHEMA", "OUTCOME_KEY", "SCORED_AT", "now_utc"]

OUTCOME_KEY = ("uri", "etag", "model_id")  # one final outcome per key


def SCORED_AT():  # noqa: N802 - a type constant, built lazily (pyarrow is imported on use)
    import pyarrow as pa

    return pa.timestamp("us", tz="UTC")


def ERRORS_SCHEMA():  # noqa: N802
    import pyarrow as pa

    return pa.schema([("uri", pa.string()), ("etag", pa.string()), ("size", pa.int64()), ("modality", pa.string()),
                      ("route", pa.string()), ("stage", pa.string()), ("error", pa.string()),
                      ("seconds", pa.float32()), ("model_id", pa.string()), ("run_id", pa.string()),
                      ("scored_at", SCORED_AT()), ("superseded_on", pa.string())])


def now_utc():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)
