"""A run date's tables and ledger updates from its staged rows, streamed: the driver holds
one window of staged rows at a time (`jobs.runs.staged_sweep`), so its memory does not
grow with the objects, frames or windows of a night.

    todo lists (per route, sorted) ─┐
    staged rows of every attempt ───┴▶ windows in URI order ─▶ per window: the rows of
      objects this date scores (todo'd, same ETag, same route), by the route's model, from
      one file per object ─▶ accounting tally ─▶ per route: votes (predictions), frames /
      windows, errors ─▶ appended to `final-<run_id>/<table>/part-NNNNN.parquet`; ledger
      updates (sorted) to `ledger-<run_id>/`
    passthrough list (skipped, deleted, restored; sorted) ─▶ `skipped` table

The ledger's new snapshot is then a merge of three sorted streams (the old snapshot, the
updates, the passthrough entries): see `ledger_updates`.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs.nightly.drift import SCORE_BINS
from jobs.nightly.manifest import ERROR, GROUP_ROWS, PREDICTED, SKIPPED, LedgerEntry, ledger_schema
from jobs.nightly.tables import SCHEMAS, TABLES
from jobs.runs.score_commit import PARTIAL
from jobs.runs.staged_parts import PartWriter, parquet_files, table_batches
from jobs.runs.staged_sweep import FILE_COLUMN, SOURCE_COLUMN, SortedStream, staged_files, windows
from jobs.storage.contract import now_utc
from jobs.storage.objects import Location
from tasks.object_votes import object_votes

if TYPE_CHECKING:
    from jobs.nightly.routes import ResolvedRoute

__all__ = ["NightTables", "ledger_updates", "stage_night_tables"]

STAGED_COLUMNS = ["uri", "etag", "model_id", "error", "stage", "probabilities", "object_info", "scored_at"]
EXAMPLE_COLUMNS = ("label", "score", "top_labels", "top_scores")


@dataclass
class NightTables:
    rows: dict[str, int]  # rows staged per table
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # modality -> predicted / errors objects
    failed_stages: Counter = field(default_factory=Counter)  # (modality, stage) -> failed objects
    class_mix: dict[str, Counter] = field(default_factory=dict)  # modality -> label -> objects
    score_bins: dict[str, list[int]] = field(default_factory=dict)  # modality -> objects per score bin
    problems: Counter = field(default_factory=Counter)  # the accounting check's findings


def stage_night_tables(fs, staging: Location, final: Location, routes: list[ResolvedRoute], run_id: str,
                       run_date: str, top_k: int) -> NightTables:
    """Write the date's tables under `final` and the ledger updates under
    `staging/ledger-<run_id>/` from the todo lists, the staged rows of every attempt and the
    passthrough list; returns the rows per table, the counts and the accounting tally."""
    import pyarrow as pa

    writers = {name: PartWriter(final.join(name), fs, SCHEMAS[name]()) for name in TABLES}
    updates = PartWriter(staging.join(f"ledger-{run_id}"), fs, ledger_schema())
    todo_schema = pa.schema([("uri", pa.string()), ("size", pa.int64()), ("etag", pa.string()),
                             ("route", pa.string())])
    expected = [SortedStream(table_batches(fs, parquet_files(staging.join(f"todo-{run_id}", r.name)),
                                           {"route": r.name}))
                for r in routes]
    files = staged_files(fs, [(path, i) for i, r in enumerate(routes)
                              for path in parquet_files(staging.join("scored", r.name))])
    model_ids = [r.model_id for r in routes]

    def same_model(table, staged):  # rows of a model exported since an earlier attempt are scored again
        import pyarrow.compute as pc

        return table.filter(pc.equal(table.column("model_id"), model_ids[staged.source]))

    result = NightTables(rows={})
    def columns(staged) -> list[str]:  # a frame or window keeps its own label and top-k
        route = routes[staged.source]
        return [*STAGED_COLUMNS, *route.positions, *(EXAMPLE_COLUMNS if route.detail_table else ())]

    for window in windows(fs, files, columns, expected, todo_schema, read_filter=same_model):
        _commit_window(window, routes, run_id, run_date, top_k, writers, updates, result)
    _stage_skipped(fs, staging.join(f"passthrough-{run_id}"), run_id, writers["skipped"])
    result.rows = {name: writer.close() for name, writer in writers.items()}
    updates.close()
    return result


def _commit_window(window, routes, run_id, run_date, top_k, writers, updates, result: NightTables) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    expected = window.expected
    rows = _objects_rows(window.rows, expected, routes) if window.rows is not None else None
    if rows is None or not rows.num_rows:
        result.problems["missing"] += expected.num_rows
        return
    failed = pc.and_(pc.is_valid(rows.column("error")), pc.not_equal(pc.fill_null(rows.column("stage"), ""), PARTIAL))
    examples = rows.filter(pc.is_null(rows.column("error")))
    failures = rows.filter(failed)
    partial = rows.filter(pc.equal(pc.fill_null(rows.column("stage"), ""), PARTIAL))
    outcomes = pc.value_counts(pa.chunked_array([pc.unique(examples.column("uri")).cast(pa.string()),
                                                 failures.column("uri").combine_chunks()]))
    result.problems["missing"] += pc.sum(pc.invert(pc.is_in(expected.column("uri"),
                                                           value_set=outcomes.field("values")))).as_py() or 0
    result.problems["more than one outcome"] += pc.sum(pc.greater(outcomes.field("counts"), 1)).as_py() or 0
    now_rows: dict[str, list] = {"predictions": [], "errors": [], "frames": [], "windows": [], "updates": []}
    for i, route in enumerate(routes):
        mine = pc.equal(examples.column(SOURCE_COLUMN), i)
        route_examples = examples.filter(mine)
        route_failures = failures.filter(pc.equal(failures.column(SOURCE_COLUMN), i))
        if route_examples.num_rows:
            keys = [("uri", "ascending"), *((c, "ascending") for c in route.positions)]
            route_examples = route_examples.sort_by(keys)
            predictions = _predictions(route_examples, expected, partial, route, run_id, top_k)
            now_rows["predictions"].append(predictions)
            if route.detail_table:
                now_rows[route.detail_table].append(_detail(route_examples, route, run_id))
            now_rows["updates"].append(_updates(predictions, route, run_id, run_date, PREDICTED, None))
            _count(result, route.media, "predicted", predictions.num_rows)
            _tally_scores(result, route.media, predictions)
        if route_failures.num_rows:
            errors = _errors(route_failures, expected, route, run_id)
            now_rows["errors"].append(errors)
            now_rows["updates"].append(_updates(errors, route, run_id, run_date, ERROR, errors.column("stage")))
            _count(result, route.media, "errors", errors.num_rows)
            result.failed_stages.update({(route.media, str(v["values"])): v["counts"]
                                         for v in pc.value_counts(errors.column("stage")).to_pylist()})
    for name, pieces in now_rows.items():
        if pieces:
            table = pa.concat_tables(pieces).sort_by("uri") if len(pieces) > 1 else pieces[0]
            (updates if name == "updates" else writers[name]).append(table)


def _objects_rows(rows, expected, routes):
    """The rows of objects this date scores: expected (same ETag, same route) and from one
    staged file per object (a retried task or an earlier attempt may have staged a copy)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    at = pc.index_in(rows.column("uri"), value_set=expected.column("uri"))
    route_names = pa.array([r.name for r in routes], pa.string())
    keep = pc.and_(pc.equal(pc.take(expected.column("etag"), at), rows.column("etag")),
                   pc.equal(pc.take(expected.column("route"), at), pc.take(route_names, rows.column(SOURCE_COLUMN))))
    rows = rows.filter(keep)
    if not rows.num_rows:
        return rows
    first = rows.select(["uri", FILE_COLUMN]).group_by("uri").aggregate([(FILE_COLUMN, "min")])
    chosen = pc.take(first.column(f"{FILE_COLUMN}_min"), pc.index_in(rows.column("uri"), value_set=first.column("uri")))
    return rows.filter(pc.equal(rows.column(FILE_COLUMN), chosen))


def _predictions(examples, expected, partial, route, run_id: str, top_k: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    votes = object_votes(examples)
    n = len(votes.best)
    at = pc.index_in(votes.uris, value_set=expected.column("uri"))
    top_labels, top_scores = votes.top_k(route.class_names, min(top_k, len(route.class_names)))
    warning = pc.take(partial.column("error"), pc.index_in(votes.uris, value_set=partial.column("uri")))
    info = examples.column("object_info").take(pa.array(votes.first_row)).to_pylist()
    return pa.table({
        "uri": votes.uris, "etag": pc.take(expected.column("etag"), at), "size": pc.take(expected.column("size"), at),
        "modality": pa.repeat(route.media, n), "route": pa.repeat(route.name, n),
        "label": pa.array(votes.labels(route.class_names), pa.string()),
        "score": pa.array(votes.scores().astype("float32")), "top_labels": top_labels, "top_scores": top_scores,
        "examples": pa.array(votes.examples.astype("int32")), "seconds": pa.array([_seconds(i) for i in info],
                                                                                   pa.float32()),
        "warning": warning, "model_id": pa.repeat(route.model_id, n), "run_id": pa.repeat(run_id, n),
        "scored_at": votes.scored_at})


def _detail(examples, route, run_id: str):
    """The frames / windows rows: the staged example rows as they are, stamped with this run."""
    import pyarrow as pa

    schema = SCHEMAS[route.detail_table]()
    columns = {name: (pa.repeat(run_id, examples.num_rows) if name == "run_id" else examples.column(name))
               for name in schema.names}
    return pa.table(columns)


def _errors(failures, expected, route, run_id: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    n = failures.num_rows
    at = pc.index_in(failures.column("uri"), value_set=expected.column("uri"))
    schema = SCHEMAS["errors"]()
    table = pa.table({
        "uri": failures.column("uri"), "etag": pc.take(expected.column("etag"), at),
        "size": pc.take(expected.column("size"), at), "modality": pa.repeat(route.media, n),
        "route": pa.repeat(route.name, n), "stage": failures.column("stage"), "error": failures.column("error"),
        "seconds": pa.array([_seconds(i) for i in failures.column("object_info").to_pylist()], pa.float32()),
        "model_id": pa.repeat(route.model_id, n), "run_id": pa.repeat(run_id, n),
        "scored_at": failures.column("scored_at")})
    missing = [name for name in schema.names if name not in table.column_names]  # superseded_on: set on publish
    for name in missing:
        table = table.append_column(name, pa.nulls(n, schema.field(name).type))
    return table.select(schema.names).cast(schema).sort_by("uri")


def _updates(table, route, run_id: str, run_date: str, outcome: str, stages):
    import pyarrow as pa

    n = table.num_rows
    return pa.table({"uri": table.column("uri"), "etag": table.column("etag"), "size": table.column("size"),
                     "model_id": pa.repeat(route.model_id, n), "run_id": pa.repeat(run_id, n),
                     "run_date": pa.repeat(run_date, n), "outcome": pa.repeat(outcome, n),
                     "stage": stages if stages is not None else pa.repeat("", n), "deleted_on": pa.repeat("", n)})


def _count(result: NightTables, media: str, outcome: str, n: int) -> None:
    counts = result.counts.setdefault(media, {"predicted": 0, "errors": 0})
    counts[outcome] += n


def _tally_scores(result: NightTables, media: str, predictions) -> None:
    """The night's class mix and score histogram per modality: what drift is measured on."""
    import numpy as np
    import pyarrow.compute as pc

    mix = result.class_mix.setdefault(media, Counter())
    mix.update({str(v["values"]): v["counts"] for v in pc.value_counts(predictions.column("label")).to_pylist()})
    scores = predictions.column("score").to_numpy(zero_copy_only=False)
    counts, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=SCORE_BINS, range=(0.0, 1.0))
    bins = result.score_bins.setdefault(media, [0] * SCORE_BINS)
    result.score_bins[media] = [a + int(b) for a, b in zip(bins, counts)]


def _seconds(object_info: str | None) -> float | None:
    try:
        return json.loads(object_info or "{}").get("seconds")
    except ValueError:
        return None


def _stage_skipped(fs, passthrough: Location, run_id: str, writer: PartWriter) -> None:
    """The skipped table: one row per object no route takes (`stage` holds why; no model)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    when = now_utc()
    for table in table_batches(fs, parquet_files(passthrough)):
        skipped = table.filter(pc.equal(table.column("outcome"), SKIPPED))
        n = skipped.num_rows
        if n:
            writer.append(pa.table({"uri": skipped.column("uri"), "etag": skipped.column("etag"),
                                    "size": skipped.column("size"), "reason": skipped.column("stage"),
                                    "model_id": pa.nulls(n, pa.string()), "run_id": pa.repeat(run_id, n),
                                    "scored_at": pa.repeat(pa.scalar(when, SCHEMAS["skipped"]().field("scored_at")
                                                                     .type), n)}))


def ledger_updates(fs, staging: Location, run_id: str) -> Iterator[LedgerEntry]:
    """This run's ledger entries in URI order: the scored objects' outcomes merged with the
    passthrough entries (skipped, deleted, restored), both sorted, neither held whole."""
    def entries(folder: Location) -> Iterator[LedgerEntry]:
        for table in table_batches(fs, parquet_files(folder), batch_rows=GROUP_ROWS):
            for row in table.to_pylist():
                yield LedgerEntry(**row)

    return heapq.merge(entries(staging.join(f"ledger-{run_id}")), entries(staging.join(f"passthrough-{run_id}")),
                       key=lambda entry: entry.uri)
