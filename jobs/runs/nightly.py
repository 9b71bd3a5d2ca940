"""Incremental scoring of a growing archive: each run date scores only what is new.

Data flow of `mediajobs run nightly.yaml --run-date D` (a score spec with `incremental: true`),
inside the run lifecycle (`jobs.runs`: output check, lease, fencing after a takeover):

    CURRENT ledger snapshot (and its version) ─▶ tidy: publish a committed date a kill
      left unpublished; drop other uncommitted dates' staging ─▶ D committed? stop (no-op)
      ─▶ decide: the input listing (paged, key order) merge-joined with the ledger ─▶ per
         object: new / changed / other-model / retry → route by extension → todo; no route →
         skipped; unchanged → nothing; gone from the listing → deleted (its rows stay); back
         as it was → restored (its old rows stand again)
      ─▶ per route, the todo objects no earlier attempt of D finished ─▶ Ray Data: fetch +
         decode ─▶ classifier actors ─▶ Parquet under `_staging/run_date=D/scored/`
      ─▶ commit (`jobs.runs.nightly_commit`, streamed a window of staged rows at a time): the
         staged rows of every attempt of D, checked (each todo object once) ─▶ the tables
         and summary.json staged under `_staging/run_date=D/final-<run_id>/` ─▶
         the new ledger snapshot and its `CURRENT` pointer, written only over the version
         read at the start: the commit point
      ─▶ publish: per Delta table (`predictions frames windows errors skipped`) one commit
         replacing partition `run_date=D`, marked with the date as its application
         transaction, then `runs/<run_id>/summary.json`, `report.html` ─▶ staging dropped.

Readers never see a row of an uncommitted run: tables get a date only after the commit
point, and each table gets it whole in one commit. A run killed before it leaves D
uncommitted: the re-run reuses every staged file an earlier attempt finished and scores
only the rest. A run killed while publishing leaves D committed with some tables not yet
published: the next run (of any date) publishes them first.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from jobs.errors import JobFailedError, UsageError
from jobs.nightly.drift import night_drift
from jobs.nightly.manifest import (
    CHANGED,
    DELETED,
    NEW,
    OTHER_MODEL,
    RESTORED,
    RETRY,
    SKIPPED,
    UNCHANGED,
    LedgerEntry,
    decide,
    deleted_entry,
    fence_current,
    ledger_schema,
    merge_ledger,
    prune_snapshots,
    read_current,
    read_ledger,
    restored_entry,
    snapshot_index,
    write_snapshot,
)
from jobs.nightly.routes import ResolvedRoute, check_run_date, resolve_routes, route_for
from jobs.nightly.tables import SUMMARY_FIELDS, TABLES
from jobs.nightly.worklists import WorkListWriter
from jobs.reports.trend import trailing_summaries
from jobs.runs.lifecycle import Run, RunFencedError
from jobs.runs.nightly_commit import NightTables, ledger_updates, stage_night_tables
from jobs.runs.nightly_publish import SUMMARY, final_folder, publish_committed, tidy
from jobs.runs.run_metrics import nightly_figures, record_night, record_objects, record_pace
from jobs.storage.objects import filesystem_for, list_objects, parse_uri, write_bytes
from jobs.storage.pointer import PointerMovedError

if TYPE_CHECKING:
    from jobs.spec.kinds import RoutedScoreSpec, ScoreSpec


@dataclass
class NightlyResult:
    run_id: str
    run_date: str
    committed: bool  # False: the date was committed already and nothing ran
    listed: int = 0
    scored: int = 0  # objects with predictions
    errors: int = 0
    skipped: int = 0
    deleted: int = 0
    unchanged: int = 0
    resumed: int = 0  # objects an earlier attempt of this date had already finished
    error_rate: float = 0.0
    seconds: float = 0.0
    summary_uri: str = ""
    report_uri: str = ""
    tables: dict[str, str] = field(default_factory=dict)


def run_incremental(spec: ScoreSpec | RoutedScoreSpec, run_date: str | None = None,
                    echo: Callable[[str], None] = print) -> NightlyResult:
    """Score what is new under `spec.input` as of `run_date`; see the module docstring.

    Raises:
        LockHeldError: another run holds the output (exit 3).
        RunFencedError: this run lost the output to another run before its commit (exit 1).
        JobFailedError: among others, when the object store stopped answering for longer
            than `MEDIAJOBS_STORE_OUTAGE_SECONDS` (saying whether the date was committed).
    """
    run_date = check_run_date(run_date)
    with Run(spec.output, list(TABLES), staging_key=f"run_date={run_date}", echo=echo) as run:
        if run.keeper.lease.taken_over:
            fence_current(run.output.uri, run.run_id)
        return _run_leased(spec, run, run_date, resolve_routes(spec), echo)


def _run_leased(spec, run: Run, run_date: str, routes: list[ResolvedRoute], echo) -> NightlyResult:
    from jobs.storage.outage import store_outage

    output, run_id = run.output, run.run_id
    # The ledger as this run found it, then the lease: a run that takes the output over
    # after this check rewrites CURRENT, and this run's commit (conditional on the version
    # read here) fails.
    snapshot, current_version = read_current(output.uri)
    if not run.keeper.held():
        raise RunFencedError(f"run {run_id} lost its lease on {output.uri} before it read the ledger; nothing was "
                             "committed")
    committed = dict(snapshot_index(snapshot).get("committed", {}))
    tidy(run, committed, run_date, echo)
    if run_date in committed:
        echo(f"run date {run_date} was committed by run {committed[run_date]}; nothing to do "
             f"(summary: {output.join('runs', committed[run_date], SUMMARY).uri})")
        return NightlyResult(committed[run_date], run_date, committed=False)
    later = sorted(d for d in committed if d > run_date)
    if later:
        raise UsageError(f"--run-date: {run_date} is before the last committed run date {later[-1]}; "
                         "run dates move forward (objects it would score were scored on later dates)")
    echo(f"scoring {parse_uri(spec.input).as_prefix().uri} as of {run_date} (run {run_id}); routes: "
         + ", ".join(f"{r.name} {' '.join(r.extensions)} -> {r.model_id}" for r in routes))
    night = Night(spec, run, run_date, routes, echo)
    try:
        night.decide(read_ledger(snapshot))
        night.score()
        run.keeper.check()
        return night.commit(snapshot, current_version, committed)
    except Exception as exc:  # noqa: BLE001 - Ray wraps worker failures; an outage gets its own message
        outage = store_outage(exc)
        if outage is None:
            raise
        raise night.outage_failure(outage) from exc


def error_budget_exceeded(result: NightlyResult, spec) -> JobFailedError | None:
    """The failure to raise once a committed run's summary has been shown, if it failed more
    objects than `max_error_rate` allows (so a scheduler alerts); None within the budget."""
    if not result.committed or spec.error_budget is None or result.error_rate <= spec.error_budget:
        return None
    return JobFailedError(f"error budget exceeded: {result.errors} of {result.scored + result.errors} scored objects "
                          f"failed ({result.error_rate:.1%} > max_error_rate {spec.error_budget:.1%}); the run was "
                          f"committed: see {result.tables['errors']}run_date={result.run_date}/ and "
                          f"{result.report_uri or result.summary_uri}")


class Night:
    """One attempt at one run date: decide, score, commit."""

    def __init__(self, spec, run: Run, run_date: str, routes: list[ResolvedRoute], echo) -> None:
        self.spec, self.run, self.output, self.run_date, self.run_id = spec, run, run.output, run_date, run.run_id
        self.routes, self.echo = routes, echo
        self.staging = run.staging  # _staging/run_date=D/: shared by the attempts at D
        self.fs = filesystem_for(run.output)
        self.decisions: Counter = Counter()
        self.listed = 0
        self.pending: dict[str, int] = {}  # route -> objects this attempt scores
        self.resumed = 0
        self.commit_point_passed = False  # the new ledger snapshot is CURRENT: the date is committed

    # -- decide -----------------------------------------------------------------------------

    def decide(self, ledger) -> None:
        """Stream the listing against the ledger; write each route's todo and pending objects."""
        for folder in {o.uri[len(self.staging.as_prefix().uri):].split("/", 1)[0]
                       for o in list_objects(self.staging.uri)}:
            if folder.startswith(("todo-", "pending-", "passthrough-", "ledger-")):
                self.run.delete(self.staging.join(folder).uri)  # an earlier attempt's lists are stale
        writers = {r.name: WorkListWriter(self.fs, self.staging.join(f"todo-{self.run_id}", r.name), self.run_id)
                   for r in self.routes}
        # skipped, deleted, restored: ledger updates, nothing scored
        passthrough = WorkListWriter(self.fs, self.staging.join(f"passthrough-{self.run_id}"), self.run_id,
                                     ledger_schema())
        model_for = {r.name: r.model_id for r in self.routes}
        listing = list_objects(self.spec.input)
        for decision in decide(listing, ledger,
                                 lambda uri: model_for[r.name] if (r := route_for(uri, self.routes)) else None):
            if decision.listed is not None:
                self.listed += 1
            obj, known = decision.listed, decision.known
            if decision.reason == DELETED:
                assert known is not None  # a deleted object is one the ledger knows
                self.decisions[DELETED] += 1
                passthrough.add(asdict(deleted_entry(known, self.run_date)))
                continue
            if decision.reason == RESTORED:
                assert known is not None  # a restored object is one the ledger knows
                self.decisions[RESTORED] += 1
                passthrough.add(asdict(restored_entry(known)))
                continue
            if decision.reason == UNCHANGED:
                self.decisions[UNCHANGED] += 1
                continue
            assert obj is not None  # every other decision is about a listed object
            route = route_for(obj.uri, self.routes)
            if route is None:  # new or changed, and no route takes it
                self.decisions[SKIPPED] += 1
                suffix = obj.uri.rsplit("/", 1)[-1].rpartition(".")[2]
                reason = f"no route takes .{suffix.lower()} objects" if "." in obj.uri.rsplit("/", 1)[-1] else \
                    "no route takes objects without an extension"
                passthrough.add(asdict(LedgerEntry(obj.uri, obj.etag, obj.size, "", self.run_id, self.run_date,
                                                   SKIPPED, reason)))
                continue
            self.decisions[decision.reason] += 1
            writers[route.name].add({"uri": obj.uri, "size": obj.size, "etag": obj.etag, "reason": decision.reason})
        passthrough.close()
        for route in self.routes:
            writers[route.name].close()
            self.pending[route.name] = self._write_pending(route)

    def _write_pending(self, route: ResolvedRoute) -> int:
        """Write the route's pending list: its todo objects whose rows no earlier attempt of
        this date staged with the model this attempt uses (rows of a model exported since
        are scored again); returns how many. The todo list and the staged rows are read
        side by side in key order, a window at a time (`jobs.runs.staged_sweep`)."""
        import pyarrow.compute as pc

        from jobs.nightly.worklists import TODO_FLUSH_ROWS, TODO_SCHEMA
        from jobs.runs.staged_parts import PartWriter, parquet_files, table_batches
        from jobs.runs.staged_sweep import SortedStream, staged_files, windows

        pending = PartWriter(self.staging.join(f"pending-{self.run_id}", route.name), self.fs, TODO_SCHEMA(),
                             part_rows=TODO_FLUSH_ROWS)
        todo = SortedStream(table_batches(self.fs, parquet_files(self.staging.join(f"todo-{self.run_id}",
                                                                                   route.name))))
        staged = staged_files(self.fs, [(path, 0) for path in parquet_files(self.staging.join("scored", route.name))])

        def key(table):  # an object as it was scored: its URI and ETag
            return pc.binary_join_element_wise(table.column("uri"), pc.fill_null(table.column("etag"), ""), "\n")

        for window in windows(self.fs, staged, lambda _: ["uri", "etag", "model_id"], [todo], TODO_SCHEMA(),
                              read_filter=lambda rows, _: rows.filter(pc.equal(rows.column("model_id"),
                                                                                route.model_id))):
            listed = window.expected
            if window.rows is not None and window.rows.num_rows and listed.num_rows:
                done = pc.is_in(key(listed), value_set=key(window.rows).combine_chunks())
                self.resumed += int(pc.sum(done).as_py() or 0)
                listed = listed.filter(pc.invert(done))
            pending.append(listed)
        return pending.close()

    # -- score ------------------------------------------------------------------------------

    def score(self) -> None:
        counts = ", ".join(f"{self.decisions[r]} {r}" for r in (NEW, CHANGED, OTHER_MODEL, RETRY) if self.decisions[r])
        self.echo(f"listed {self.listed} objects: {counts or 'nothing new'}; {self.decisions[UNCHANGED]} unchanged, "
                  f"{self.decisions[SKIPPED]} skipped (no route), {self.decisions[DELETED]} deleted"
                  + (f", {self.decisions[RESTORED]} restored" if self.decisions[RESTORED] else "")
                  + (f"; {self.resumed} already scored by an earlier attempt of {self.run_date}" if self.resumed
                     else ""))
        self.run.events.add("scoring", objects=self.listed, todo=sum(self.pending.values()),
                            decisions={k: v for k, v in self.decisions.items() if v})
        for route in self.routes:
            rows = self.pending.get(route.name, 0)
            if rows:
                self.echo(f"route {route.name}: scoring {rows} objects with {route.model_id}")
                self._score_route(route)

    def _score_route(self, route: ResolvedRoute) -> None:
        """Score the route's pending objects, one pending file (at most TODO_FLUSH_ROWS
        objects) per Ray Data run, so the driver never holds more than one file's rows.

        The rows go in with `from_items`, not `read_parquet`: a read task needs a CPU, and on
        a small cluster the classifier actors hold them all (seen: the run hung)."""
        import pyarrow.parquet as pq

        from jobs.runs.score import ScoringProgress, scoring_pipeline, stage_all

        progress = ScoringProgress(self.pending.get(route.name, 0))
        pending = sorted(o.uri for o in list_objects(self.staging.join(f"pending-{self.run_id}", route.name).uri)
                         if o.uri.endswith(".parquet"))
        for uri in pending:
            items = pq.read_table(parse_uri(uri).fs_path, filesystem=self.fs).to_pylist()
            # One folder per route and attempt: a resumed run adds files, never rewrites one.
            stage_all(scoring_pipeline(items, route.task, route.model_uri, self.spec, self.run_id,
                                 self.staging.join("scored", route.name, self.run_id).uri, objects_per_block=32,
                                 model_id=route.model_id), progress)

    # -- commit -----------------------------------------------------------------------------

    def commit(self, snapshot, current_version: str | None, committed: dict[str, str]) -> NightlyResult:
        """Stage the final tables and summary, commit (the new ledger snapshot, written only
        over the version of CURRENT this run read), publish."""
        self.run.keeper.check()
        final = self.staging.join(final_folder(self.run_id))  # this attempt's own: nobody else writes there
        tables = stage_night_tables(self.fs, self.staging, final, self.routes, self.run_id, self.run_date,
                                    self.spec.top_k)
        problems = tables.problems
        self.run.fail_unless_accounted({"missing": problems["missing"], "unexpected": problems["unexpected"],
                                        "more than one outcome": problems["more than one outcome"]},
                                       what=f" of run date {self.run_date}")
        rows = tables.rows
        errors, scored = rows["errors"], rows["predictions"]
        result = NightlyResult(
            self.run_id, self.run_date, committed=True, listed=self.listed, scored=scored, errors=errors,
            skipped=rows["skipped"], deleted=self.decisions[DELETED], unchanged=self.decisions[UNCHANGED],
            resumed=self.resumed, error_rate=errors / (scored + errors) if scored + errors else 0.0,
            seconds=time.time() - self.run.started)
        result.tables = {name: self.output.join(name).uri + "/" for name in TABLES}
        result.summary_uri = self.output.join("runs", self.run_id, "summary.json").uri
        # The nights drift is measured against, from the ledger index this run read.
        trailing = trailing_summaries(self.output.uri, self.run_date, self.spec.drift_settings.nights, committed)
        summary = self._summary(result, tables, trailing)
        write_bytes(final.join(SUMMARY).uri, json.dumps(summary, indent=2).encode())
        self.run.keeper.check()
        ledger = merge_ledger(read_ledger(snapshot), ledger_updates(self.fs, self.staging, self.run_id))
        try:
            write_snapshot(self.output.uri, f"snapshot-{self.run_date}-{self.run_id}", ledger, index_extra={
                "run_id": self.run_id, "run_date": self.run_date,
                "committed": {**committed, self.run_date: self.run_id}}, expected_current=current_version)
        except PointerMovedError:
            raise RunFencedError(f"run {self.run_id} lost its lease on {self.output.uri}: another run has taken over "
                                 f"the output and moved its ledger. Nothing of this run was committed; this run "
                                 "stops here and deletes nothing.") from None
        self.commit_point_passed = True
        self.run.summary_uri = result.summary_uri
        # Committed. From here a kill is repaired by the next run of any date: it publishes first.
        result.report_uri = publish_committed(self.run, self.run_date, self.run_id, self.echo)
        self._record_metrics(summary, tables)
        if self.run.keeper.held():  # a run that lost the output deletes nothing
            prune_snapshots(self.output.uri)
        return result

    def _record_metrics(self, summary: dict, tables: NightTables) -> None:
        name = self.spec.name
        for media, counts in tables.counts.items():
            stages = {stage: n for (m, stage), n in tables.failed_stages.items() if m == media}
            record_objects("nightly", name, media, scored=counts["predicted"], failed_stages=stages)
        record_objects("nightly", name, "none", scored=0, skipped=summary["skipped"])
        record_pace("nightly", name, summary["objects_per_s"], summary["seconds"])
        record_night(name, nightly_figures(summary), self.echo)

    def outage_failure(self, outage: str) -> JobFailedError:
        """The failure to raise when the object store stopped answering during this attempt."""
        if self.commit_point_passed:
            return JobFailedError(
                f"the object store stopped answering: {outage}. Run date {self.run_date} was committed by run "
                f"{self.run_id} but not published in full; the next run (of any date) publishes it first.")
        return JobFailedError(
            f"the object store stopped answering: {outage}. Nothing was committed: {self.output.uri} holds no "
            f"results of run date {self.run_date} (run {self.run_id}); what was scored before the outage stays "
            f"under {self.staging.uri}/ and a re-run of {self.run_date}, once the store answers again, scores "
            "only the rest.")

    def _summary(self, result: NightlyResult, tables: NightTables, trailing: list[dict]) -> dict:
        counts = {media: tables.counts[media] for media in sorted(tables.counts)}
        seconds = max(result.seconds, 1e-9)
        budget = self.spec.error_budget
        summary = {
            "run_id": self.run_id, "run_date": self.run_date, "spec_name": self.spec.name,
            "input": self.spec.input, "output": self.output.uri,
            "started_at": _iso(time.time() - result.seconds), "finished_at": _iso(time.time()),
            "seconds": round(result.seconds, 3), "listed": self.listed,
            "objects_per_s": round((result.scored + result.errors) / seconds, 3),
            "counts": counts, "skipped": result.skipped, "resumed": self.resumed,
            "decisions": {k: self.decisions[k] for k in (NEW, CHANGED, OTHER_MODEL, RETRY, UNCHANGED, DELETED,
                                                        RESTORED)},
            "model_ids": {r.name: r.model_id for r in self.routes},
            "error_rate": round(result.error_rate, 6), "max_error_rate": budget,
            "error_budget_exceeded": budget is not None and result.error_rate > budget,
            "class_mix": {media: dict(sorted(mix.items())) for media, mix in sorted(tables.class_mix.items())},
            "score_bins": dict(sorted(tables.score_bins.items())),
            "drift": night_drift(tables.class_mix, tables.score_bins, trailing, self.spec.drift_settings.max_psi),
            "tables": tables.rows,
        }
        return {key: summary[key] for key in SUMMARY_FIELDS}  # the documented order


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


__all__ = ["NightlyResult", "error_budget_exceeded", "run_incremental"]
