"""The one lifecycle of a run that writes result tables (score, nightly score, generate, stylize).

Modelled on Ray Data's `Datasink` (`on_write_start` -> `write` -> `on_write_complete` /
`on_write_failed`):

    start   run id ▶ output check (writable, conditional writes honoured) ▶ no tables of the
            earlier layout ▶ the output's lease ▶ after a takeover, the tables fenced ▶ stale
            staging of dead runs dropped
    work    the job's own (Ray Data actors stage Parquet under `run.staging`)
    commit  the accounting check ▶ per table one Delta commit, checked against a snapshot
            taken while the lease was verified: a run that lost its lease cannot commit;
            waited out through a store outage, and a commit that already landed is not
            made twice
    finish  `runs/<run_id>/summary.json` (with each table's committed version) ▶ staging
            dropped ▶ lease released;   on failure: lease released, staging kept for the
            next run to drop (or to reuse: a nightly attempt keeps its date's staging)
    events  `runs/<run_id>/events.jsonl` (jobs.runs.events): started ... finished | failed |
            fenced, from the start of the work on; the last written before the lease is released

A job supplies only its rows -> tables mapping (`TableWrite`) and its accounting keys.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from jobs.errors import JobFailedError, MediaJobsError, root_cause
from jobs.runs.events import EVENTS, RunEvents
from jobs.runs.output_check import prepare_output
from jobs.storage.delta import (
    TableExistsError,
    check_not_legacy,
    commit_parts,
    committed_version,
    delta_tables_under,
    fence_table,
    open_table,
    write_table,
)
from jobs.storage.lease import LeaseKeeper
from jobs.storage.objects import Location, delete_prefix, list_objects, write_bytes
from jobs.storage.outage import retry_while_unavailable, store_outage

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["STAGING", "Run", "RunFencedError", "TableWrite", "new_run_id"]

STAGING = "_staging"
CONVERT_COMMAND = "mediajobs tables convert {output}"


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


class RunFencedError(JobFailedError):
    """This run lost the output's lease (it stalled past its TTL and another run took over)."""

    headline = "run fenced out"


@dataclass(frozen=True)
class TableWrite:
    """One table's part of a run's commit.

    `rows` is called on each attempt (a commit waited out through a store outage reads its
    staged rows again).
    """

    name: str
    rows: Callable[[], pa.Table | pa.RecordBatchReader]
    mode: Literal["overwrite", "append"] = "overwrite"
    partition_by: list[str] | None = None
    predicate: str | None = None  # with overwrite: replace only the rows it matches
    app_transaction: tuple[str, int] | None = None
    key: str = ""  # with the run id, what marks this commit: a run that commits one table twice keys each
    supersedes: Callable[[], tuple[str, pa.Table]] | None = None  # see delta_tables.write_table
    # Instead of `rows`: staged Parquet files in the table's schema (`schema`, with the
    # partition column), committed by reference as the partition `partition` (column,
    # value): see delta_tables.commit_parts.
    parts: Callable[[], list[str]] | None = None
    schema: Callable[[], pa.Schema] | None = None
    partition: tuple[str, str] | None = None


@dataclass
class Run:
    """One run of a job into `output_uri`; use as a context manager around the job's work.

    Args:
        output_uri: the job's output prefix.
        tables: the tables this kind of job writes (checked for the earlier layout, fenced
            after a takeover).
        staging_key: the folder under `_staging/` for this run's staged rows; defaults to
            the run id. Runs that resume (a nightly date) pass a key of their own, which
            the start-up clean-up keeps.
        echo: where notes go (the CLI's console).
    """

    output_uri: str
    tables: list[str]
    staging_key: str | None = None
    echo: Callable[[str], None] = print
    run_id: str = field(default_factory=new_run_id)
    started: float = field(default_factory=time.time)
    output: Location = field(init=False)
    _keeper: LeaseKeeper | None = field(init=False, default=None)
    events: RunEvents = field(init=False)  # runs/<run_id>/events.jsonl, from the start of the run on
    summary_uri: str = field(init=False, default="")  # set by `finish`
    versions: dict[str, int | None] = field(init=False, default_factory=dict)  # None: no rows, no table

    @property
    def keeper(self) -> LeaseKeeper:
        """The output's lease keeper, from the start of the run on."""
        if self._keeper is None:
            raise RuntimeError(f"run {self.run_id} has not started: use it as a context manager")
        return self._keeper

    # -- start ----------------------------------------------------------------------------

    def __enter__(self) -> Run:
        self.output = prepare_output(self.output_uri)
        check_not_legacy(self.output, self.tables, lambda uri: CONVERT_COMMAND.format(output=uri))
        self._keeper = keeper = LeaseKeeper(self.output.uri, self.run_id)
        self.events = RunEvents(self.output.join("runs", self.run_id, EVENTS).uri, self.run_id, self.started)
        try:
            if keeper.lease.taken_over:
                self._fence()
            self._drop_stale_staging()
            self.events.add("started", output=self.output.uri)
        except BaseException:
            keeper.release_after_failure(self.echo)
            raise
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        # The last events are written while the run still holds the output (before the release).
        if exc is not None:
            lost = isinstance(exc, Exception) and not isinstance(exc, RunFencedError) and not self._still_held()
            fenced = lost or isinstance(exc, RunFencedError)
            self.events.add("fenced" if fenced else "failed", error=str(exc).splitlines()[0] if str(exc) else
                            type(exc).__name__)
            self.keeper.release_after_failure(self.echo)
            if lost:  # the takeover explains the failure (e.g. its staging was dropped as a dead run's)
                raise self._fenced(f"it failed after another run took the output over: {root_cause(exc)}",
                                   {}) from exc
            return
        # Written before the lease is checked a last time: a run stalled at this write and
        # overtaken meanwhile is still told it lost the output (and says `fenced` after it).
        self.events.add("finished", summary=self.summary_uri)
        if not self._still_held():
            self.events.add("fenced")
            self.keeper.release()  # conditional: the other run's lease stays
            done = ", ".join(f"{name} version {v}" for name, v in sorted(self.versions.items()) if v is not None)
            raise RunFencedError(
                f"run {self.run_id} lost its lease on {self.output.uri} before it finished: another run has taken "
                f"over the output since. What this run committed ({done or 'nothing'}) stands until that run "
                "commits its own; check that run's summary.")
        self.keeper.release()

    def _still_held(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.keeper.held()
        except (OSError, MediaJobsError, BotoCoreError, ClientError):
            return True  # the store does not answer: nothing says another run took over

    @property
    def staging(self) -> Location:
        return self.output.join(STAGING, self.staging_key or self.run_id)

    def _fence(self) -> None:
        """The lease was taken from a run that did not release it and may still be alive:
        make its prepared commits conflict, on every table under the output."""
        for name in sorted(set(delta_tables_under(self.output)) | set(self.tables)):
            fence_table(self.output.join(name), self.run_id)
        self.echo(f"note: took over the output from a run that did not finish; its tables are fenced "
                  f"(run {self.run_id})")

    def _drop_stale_staging(self) -> None:
        """Staging folders of runs that are gone: this run holds the lease, so no live run
        writes there (a fenced one cannot commit what it stages). A nightly date's folder
        (`run_date=...`) is left to the nightly runs, which reuse what an attempt staged."""
        prefix = self.output.join(STAGING).as_prefix().uri
        folders = {o.uri[len(prefix):].split("/", 1)[0] for o in list_objects(prefix) if "/" in o.uri[len(prefix):]}
        for key in sorted(folders - {self.staging_key or self.run_id}):
            if not key.startswith("run_date="):
                self.delete(self.output.join(STAGING, key).uri)

    def delete(self, uri: str) -> None:
        """Delete everything under `uri`, after checking that this run still holds the
        output: a run that lost its lease deletes nothing.

        Raises:
            RunFencedError: it does not.
        """
        if not self.keeper.held():
            raise self._fenced(f"its lease was taken over before it deleted {uri}", {})
        delete_prefix(uri)

    # -- commit ---------------------------------------------------------------------------

    def staged_rows(self, *folder: str):
        """The run's staged Parquet (or that of a folder under its staging) as one pyarrow
        dataset, once this run is known to still hold the output (a run that took over
        drops a stale run's staging).

        Raises:
            RunFencedError: it does not.
        """
        import pyarrow.dataset as pads

        from jobs.storage.objects import filesystem_for

        if not self.keeper.held():
            raise self._fenced("its lease was taken over before its commit", {})
        location = self.staging.join(*folder) if folder else self.staging
        return pads.dataset(location.fs_path, filesystem=filesystem_for(location), format="parquet")

    def check_accounting(self, expected: Iterable[Hashable], outcomes: Iterable[Hashable],
                         extra: dict[str, int] | None = None, what: str = "") -> None:
        """Every expected key has exactly one final outcome, and nothing else has one.

        Raises:
            JobFailedError: naming each kind of problem and how many; nothing is committed.
        """
        counts = Counter(outcomes)
        wanted = set(expected)
        self.fail_unless_accounted({"missing": len(wanted - counts.keys()), "unexpected": len(counts.keys() - wanted),
                                    "more than one outcome": sum(1 for n in counts.values() if n > 1),
                                    **(extra or {})}, what)

    def fail_unless_accounted(self, problems: dict[str, int], what: str = "") -> None:
        """The accounting check's verdict on counts a job tallied itself (a streamed commit
        counts window by window): each name, how many; all zero passes.

        Raises:
            JobFailedError: naming each kind of problem and how many; nothing is committed.
        """
        if any(problems.values()):
            detail = ", ".join(f"{name}: {n}" for name, n in problems.items() if n)
            raise JobFailedError(f"accounting check failed for run {self.run_id}{what} ({detail}); nothing was "
                                 f"committed, the staged rows are under {self.staging.uri}/")

    def commit(self, writes: list[TableWrite]) -> dict[str, int | None]:
        """Commit each table's rows (one Delta version per table), fenced by the lease.

        Returns:
            Each table's committed version; None for a table that does not exist and
            would hold no rows (it is not created: "no errors table" means no errors).

        Raises:
            RunFencedError: the lease was lost; nothing more is committed.
            JobFailedError: the store stayed away past the outage budget (saying which
                tables hold this run and which still the previous one).
        """
        done: dict[str, int | None] = {}  # kept across attempts: a retry goes on where one stopped
        self.events.add("committing", tables=[w.name for w in writes])
        try:
            retry_while_unavailable(lambda: self._commit_once(writes, done), f"committing run {self.run_id}")
        except RunFencedError:
            raise
        except Exception as exc:  # noqa: BLE001 - delta-rs's and pyarrow's errors past the budget, or ours
            outage = store_outage(exc)
            if outage is None:
                raise
            state = (f"Nothing was committed: {self.output.uri} holds no results of run {self.run_id}" if not done
                     else f"the tables {', '.join(sorted(done))} hold run {self.run_id}, the others its previous run")
            raise JobFailedError(f"the object store stopped answering: {outage}. {state}; the staged rows are "
                                 f"kept under {self.staging.uri}/. Re-run the job when the store answers "
                                 "again.") from exc
        self.versions.update(done)
        self.events.add("committed", versions=dict(done))
        return done

    def _commit_once(self, writes: list[TableWrite], done: dict[str, int | None]) -> None:
        from deltalake.exceptions import CommitFailedError

        # Snapshots first, then the lease: a run that takes the lease over after this check
        # fences every table, which makes each commit against these snapshots conflict.
        todo = [w for w in writes if w.name not in done]
        snapshots = {w.name: open_table(self.output.join(w.name)) for w in todo}
        if not self.keeper.held():
            raise self._fenced("its lease was taken over before its commit", done)
        for write in todo:
            location, snapshot = self.output.join(write.name), snapshots[write.name]
            key = self.run_id + (f"/{write.key}" if write.key else "")
            landed = committed_version(snapshot, key)  # an earlier attempt whose answer was lost
            if landed is None and write.parts is not None:
                assert write.schema is not None and write.partition is not None  # given with `parts`
                try:
                    landed = commit_parts(location, snapshot, write.parts(), write.schema(), self.run_id, key,
                                          partition=write.partition, app_transaction=write.app_transaction)
                except (CommitFailedError, TableExistsError) as exc:
                    raise self._fenced(f"another run committed to {write.name} first ({exc})", done) from None
            if landed is None:
                rows = write.rows()
                if snapshot is None:
                    rows = _unless_empty(rows)
                    if rows is None:  # nothing to say and no earlier run to replace: no table
                        done[write.name] = None
                        continue
                try:
                    landed = write_table(location, snapshot, rows, self.run_id, key, mode=write.mode,
                                         partition_by=write.partition_by,
                                         predicate=write.predicate,
                                         app_transaction=write.app_transaction,
                                         supersedes=write.supersedes() if write.supersedes else None)
                except (CommitFailedError, TableExistsError) as exc:
                    raise self._fenced(f"another run committed to {write.name} first ({exc})", done) from None
            done[write.name] = landed

    def _fenced(self, why: str, done: dict[str, int | None]) -> RunFencedError:
        committed = sorted({**self.versions, **done})
        return RunFencedError(
            f"run {self.run_id} lost its lease on {self.output.uri} ({why}): another run has taken over the output. "
            + ("Nothing of this run was committed" if not committed else
               f"Only {', '.join(committed)} were committed before it was fenced out; the other run's commit replaces "
               "them") + "; this run stops here and deletes nothing.")

    # -- finish ---------------------------------------------------------------------------

    def finish(self, summary: dict) -> str:
        """Write `runs/<run_id>/summary.json` (the run's summary plus each table's committed
        version), drop the staging, and return the summary's URI."""
        uri = self.output.join("runs", self.run_id, "summary.json").uri
        record = {**summary, "run_id": self.run_id, "table_versions": dict(self.versions),
                  "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        retry_while_unavailable(lambda: write_bytes(uri, json.dumps(record, indent=2).encode()),
                                f"writing the summary of run {self.run_id}")
        self.summary_uri = uri
        self.drop_staging()
        return uri

    def drop_staging(self) -> None:
        """Best effort: the run is committed, and the next run drops what is left."""
        try:
            self.delete(self.staging.uri)
        except RunFencedError:
            pass  # said when the run ends (__exit__)
        except (OSError, MediaJobsError):
            self.echo(f"note: {self.staging.uri}/ was not deleted (the store did not answer); the next run drops it")


def _unless_empty(rows: pa.Table | pa.RecordBatchReader) -> pa.Table | pa.RecordBatchReader | None:
    """None for rows without a row; else the same rows (a reader is read up to its first
    row, not whole: a table's rows may be more than the driver should hold)."""
    import itertools

    import pyarrow as pa

    if isinstance(rows, pa.Table):
        return rows if rows.num_rows else None
    for batch in rows:
        if batch.num_rows:
            return pa.RecordBatchReader.from_batches(rows.schema, itertools.chain([batch], rows))
    return None
