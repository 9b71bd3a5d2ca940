"""A plain score run's staging and its rows -> tables mapping, after the accounting check.

Under the run's staging: `listing/` (the input's objects, sorted, a file per 100,000)
and `scored/` (what the actors stage: one row per decoded example, an image, a frame, a
window, and one row per failed object). Committing splits the staged rows into the
example table, the per-object table (majority label and mean class scores, for videos
and audio files) and `errors`, each replacing the previous run's version of that Delta
table, reading the staged rows a window at a time.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from jobs.errors import MediaJobsError
from jobs.runs.lifecycle import Run, TableWrite
from jobs.runs.progress import report
from jobs.runs.staged_parts import PartWriter, parquet_files, read_parts, table_batches
from jobs.runs.staged_sweep import SortedStream, staged_files, windows
from jobs.storage.contract import ERRORS_SCHEMA, SCORED_AT
from tasks.object_votes import object_votes

PARTIAL = "decode-partial"  # an errors row for an object whose examples were still scored
LISTING, SCORED = "listing", "scored"  # under a plain run's staging: what it lists, what the actors stage
STAGED_COLUMNS = ["uri", "etag", "probabilities", "object_info", "model_id", "run_id", "stage", "error", "node_id",
                  "scored_at"]


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
    failed_stages: dict[str, int]  # failed objects per errors-table stage
    versions: dict[str, int | None]  # each table's Delta version holding this run (None: no rows, no table)


def commit_run(run: Run, task, media: str, class_names: list[str]) -> Committed:
    """Check the accounting invariant over the staged rows (`scored/`) against the listing
    (`listing/`, see `stage_listing`), then replace each of the task's tables with this
    run's rows (one Delta commit each: readers see the previous run or this one, whole).
    Streamed: the staged rows are read a window at a time (`jobs.runs.staged_sweep`), the
    errors and per-object rows written under `commit/` as they go, and every table is
    committed from a stream. The staged rows stay until the run finishes.

    Raises:
        JobFailedError: when an object is missing, unexpected or both scored and failed;
            nothing is committed then and the staged rows are kept for inspection.
        RunFencedError: the run lost its lease before or during the commit.
    """
    import pyarrow.compute as pc

    from jobs.storage.objects import filesystem_for

    scored = run.staged_rows(SCORED)  # checks the lease
    fs = filesystem_for(run.output)
    examples_table, objects_table = task.output_tables
    derived = run.staging.join("commit")
    errors = PartWriter(derived.join("errors"), fs, ERRORS_SCHEMA())
    objects = PartWriter(derived.join(objects_table), fs, _objects_schema(task, class_names)) if objects_table \
        else None
    tally = _Tally()
    files = staged_files(fs, [(path, 0) for path in parquet_files(run.staging.join(SCORED))])
    listing = SortedStream(table_batches(fs, parquet_files(run.staging.join(LISTING))))
    for window in windows(fs, files, lambda staged: STAGED_COLUMNS, [listing], LISTING_SCHEMA()):
        tally.add(window)
        if window.rows is None:
            continue
        failed_rows = window.rows.filter(pc.is_valid(window.rows.column("error")))
        errors.append(errors_rows(failed_rows, window.expected, media))
        if objects is not None:
            examples = window.rows.filter(pc.is_null(window.rows.column("error")))
            if examples.num_rows:
                objects.append(_object_rows(examples.sort_by("uri"), task, class_names))
    errors.close()
    if objects is not None:
        objects.close()
    run.fail_unless_accounted({"missing": tally.missing, "unexpected": tally.unexpected,
                               "more than one outcome": tally.more_than_one,
                               "partial without examples": tally.partial_without_examples})

    is_example = pc.field("error").is_null()
    writes = [TableWrite(examples_table, lambda: scored.scanner(columns=example_columns(task), filter=is_example)
                         .to_reader()),
              TableWrite("errors", lambda: read_parts(fs, derived.join("errors"), ERRORS_SCHEMA()))]
    if objects is not None:
        writes.append(TableWrite(objects_table, lambda: read_parts(fs, derived.join(objects_table),
                                                                   _objects_schema(task, class_names))))
    versions = run.commit(writes)
    return Committed([w.name for w in writes], tally.scored, tally.failed, tally.partial, tally.example_rows,
                     dict(tally.nodes), dict(tally.failed_stages), versions)


class _Tally:
    """The accounting check's counts, and the run's, summed window by window (an object's
    rows are all in one window)."""

    def __init__(self) -> None:
        self.missing = self.unexpected = self.more_than_one = self.partial_without_examples = 0
        self.scored = self.failed = self.partial = self.example_rows = 0
        self.nodes: Counter = Counter()
        self.failed_stages: Counter = Counter()

    def add(self, window) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        expected = window.expected.column("uri")
        rows = window.rows
        if rows is None:
            self.missing += len(expected)
            return
        error, stage = rows.column("error"), pc.fill_null(rows.column("stage"), "")
        examples = pc.unique(rows.filter(pc.is_null(error)).column("uri"))
        failed_rows = rows.filter(pc.and_(pc.is_valid(error), pc.not_equal(stage, PARTIAL)))
        failed = failed_rows.column("uri")
        self.failed_stages.update({str(v["values"]): v["counts"]
                                   for v in pc.value_counts(failed_rows.column("stage")).to_pylist()})
        partial = pc.unique(rows.filter(pc.equal(stage, PARTIAL)).column("uri"))
        outcomes = pc.value_counts(pa.chunked_array([examples.cast(pa.string()), failed.combine_chunks()]))
        found = outcomes.field("values")
        self.missing += _count(pc.invert(pc.is_in(expected, value_set=found)))
        self.unexpected += _count(pc.invert(pc.is_in(found, value_set=expected.combine_chunks())))
        self.more_than_one += _count(pc.greater(outcomes.field("counts"), 1))
        self.partial_without_examples += _count(pc.invert(pc.is_in(partial, value_set=examples)))
        self.scored += len(examples)
        self.failed += len(failed)
        self.partial += len(partial)
        self.example_rows += _count(pc.is_null(error))
        self.nodes.update({str(entry["values"]): entry["counts"]
                           for entry in pc.value_counts(rows.column("node_id")).to_pylist()})


def _count(mask) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(mask).as_py() or 0)


def errors_rows(staged_errors, listed, media: str):
    """The errors table of a plain run (the one schema of every job kind's errors); `listed`
    is the listing's rows of the same objects (their sizes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = staged_errors.num_rows
    sizes = pc.take(listed.column("size"), pc.index_in(staged_errors.column("uri"), value_set=listed.column("uri")))
    return pa.table({
        "uri": staged_errors.column("uri"), "etag": staged_errors.column("etag"), "size": sizes,
        "modality": pa.repeat(media, n), "route": pa.nulls(n, pa.string()), "stage": staged_errors.column("stage"),
        "error": staged_errors.column("error"),
        "seconds": pa.array([_info(i).get("seconds") for i in staged_errors.column("object_info").to_pylist()],
                            pa.float32()),
        "model_id": staged_errors.column("model_id"), "run_id": staged_errors.column("run_id"),
        "scored_at": staged_errors.column("scored_at"), "superseded_on": pa.nulls(n, pa.string())},
        schema=ERRORS_SCHEMA()).sort_by("uri")


def _info(object_info: str | None) -> dict:
    try:
        return json.loads(object_info or "{}")
    except ValueError:
        return {}


def _objects_schema(task, class_names: list[str]):
    import pyarrow as pa

    return pa.schema([("uri", pa.string()), ("etag", pa.string()), ("label", pa.string()), ("score", pa.float32()),
                      ("mean_scores", pa.map_(pa.string(), pa.float32())), (task.count_column, pa.int64()),
                      ("duration_s", pa.float64()), ("model_id", pa.string()), ("run_id", pa.string()),
                      ("scored_at", SCORED_AT())])


def _object_rows(examples, task, class_names: list[str]):
    """One row per object: majority label (ties broken by mean score), mean scores per class."""
    import numpy as np
    import pyarrow as pa

    votes = object_votes(examples)
    firsts = pa.array(votes.first_row)
    n, classes = votes.means.shape
    mean_scores = pa.MapArray.from_arrays(pa.array((np.arange(n + 1) * classes).astype(np.int32)),
                                          pa.array(class_names * n, pa.string()),
                                          pa.array(votes.means.ravel().astype(np.float32)))
    info = [_info(i) for i in examples.column("object_info").take(firsts).to_pylist()]
    return pa.table({
        "uri": votes.uris, "etag": examples.column("etag").take(firsts), "label": votes.labels(class_names),
        "score": pa.array(votes.scores().astype(np.float32)), "mean_scores": mean_scores,
        task.count_column: pa.array(votes.examples.astype(np.int64)),
        "duration_s": pa.array([i.get("duration_s") for i in info], pa.float64()),
        "model_id": examples.column("model_id").take(firsts), "run_id": examples.column("run_id").take(firsts),
        "scored_at": votes.scored_at}, schema=_objects_schema(task, class_names))


def LISTING_SCHEMA():  # noqa: N802 - a schema constant, built lazily
    import pyarrow as pa

    return pa.schema([("uri", pa.string()), ("size", pa.int64()), ("etag", pa.string())])


def stage_listing(objects, run: Run, first_rows: int | None = None, on_file=None) -> int:
    """Write the listing (sorted, as S3 lists) under the run's staging, a file per
    TODO_FLUSH_ROWS objects (or growing from `first_rows`, each file's path given to
    `on_file` once written: `WorkListWriter`); returns how many objects. The driver keeps no
    listing: the scoring reads it a file at a time, the commit a window at a time."""
    from jobs.nightly.worklists import WorkListWriter
    from jobs.storage.objects import filesystem_for

    writer = WorkListWriter(filesystem_for(run.output), run.staging.join(LISTING), run.run_id, LISTING_SCHEMA(),
                            first_rows=first_rows, on_file=on_file)
    previous, listed = None, 0
    for obj in objects:
        if previous is not None and obj.uri <= previous:
            raise MediaJobsError(f"the input listing is not in key order ({obj.uri!r} after {previous!r}); the "
                                 "commit reads it back in order")
        previous = obj.uri
        writer.add({"uri": obj.uri, "size": obj.size, "etag": obj.etag})
        listed += 1
        if listed % 1000 == 0:  # a listing page
            report("listing", listed)
    writer.close()
    report("listing", listed, listed)  # done: its bar full
    return writer.rows


def listing_files(run: Run) -> list[str]:
    return parquet_files(run.staging.join(LISTING))
