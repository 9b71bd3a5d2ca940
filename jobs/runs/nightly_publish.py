"""Making a committed run date visible: the staging layout of incremental runs, the Delta
commit of each of a date's staged tables (after the commit point only), and the tidy-up
every run does first. See jobs/runs/nightly.py for the whole flow."""

from __future__ import annotations

import json
from functools import partial

from jobs.errors import JobFailedError
from jobs.nightly.tables import SCHEMAS, TABLES
from jobs.runs.lifecycle import STAGING, Run, TableWrite
from jobs.runs.staged_parts import parquet_files, read_parts
from jobs.storage.contract import OUTCOME_KEY
from jobs.storage.objects import exists, filesystem_for, list_objects, read_bytes, write_bytes

SUMMARY = "summary.json"
NIGHTLY_APP = "mediajobs-nightly"  # the Delta application transaction id: its version is the date, YYYYMMDD


def final_folder(run_id: str) -> str:
    """Under a date's staging: the tables and summary of attempt `run_id`, as they will be
    published (one folder per attempt, so a stalled attempt never writes into the one the
    ledger names)."""
    return f"final-{run_id}"


def date_version(run_date: str) -> int:
    return int(run_date.replace("-", ""))


def tidy(run: Run, committed: dict[str, str], run_date: str, echo) -> None:
    """Before a run, under the lease (nothing else writes here): publish committed dates a
    kill left unpublished; drop the staging of other uncommitted dates (run dates move
    forward: they can never commit). This date's staging stays: what an earlier attempt
    finished is reused."""
    staged = {date for o in list_objects(run.output.join(STAGING).uri) if (date := partition_date(o.uri)) is not None}
    for date in sorted(staged):
        if date in committed:
            echo(f"run date {date} was committed by run {committed[date]} but not published in full (the run was "
                 "stopped); publishing it now")
            publish_committed(run, date, committed[date], echo)
        elif date != run_date:
            run.delete(run.output.join(STAGING, f"run_date={date}").uri)


def publish_committed(run: Run, run_date: str, run_id: str, echo) -> str:
    """Make a committed date's staged tables visible: per table one Delta commit replacing
    the date's partition, marked with the date as its application transaction (a table
    that has it already is passed over; `errors` also marks the earlier rows this date's
    outcomes supersede, in the same commit); then its summary (`runs/<run_id>/summary.json`),
    its report, and drop its staging. Idempotent, so a publish cut short is finished by the
    next run. Returns the report's URI ("" if it could not be drawn).

    Raises:
        JobFailedError: the staged tables do not hold the rows the summary counts (a short
            listing, a lost file); nothing more is published and the staging stays.
        RunFencedError: this run lost its lease.
    """
    staging = run.output.join(STAGING, f"run_date={run_date}")
    staged = _StagedDate(run, run_date, staging.join(final_folder(run_id)))
    summary_uri = run.output.join("runs", run_id, SUMMARY).uri
    staged_summary = staged.final.join(SUMMARY).uri
    if not exists(staged_summary):  # published in full by an earlier attempt, whose clean-up was cut short
        run.delete(staging.uri)
        return ""
    staged.summary = json.loads(read_bytes(staged_summary))
    run.commit(staged.table_writes(staging))
    write_bytes(summary_uri, read_bytes(staged_summary))  # last: once it is there, so is every table
    report_uri = ""
    try:
        from jobs.reports.figures import read_figures
        from jobs.reports.report import write_report

        report_uri = write_report(run.output.uri, staged.summary, read_figures(run.output.uri, run_date))
    except Exception as exc:  # noqa: BLE001 - the scores matter more than their pictures
        echo(f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
             f"`mediajobs report {run.output.uri} --run-date {run_date}` tries again")
    run.delete(staging.uri)
    return report_uri


class _StagedDate:
    """A committed date's staged tables (`final`, counted by its summary), as the Delta writes
    that publish them."""

    def __init__(self, run: Run, run_date: str, final) -> None:
        self.run, self.run_date, self.final = run, run_date, final
        self.fs = filesystem_for(run.output)
        self.summary: dict = {}

    def table_writes(self, staging) -> list[TableWrite]:
        """One write per table with rows (or `errors` rows to supersede), each checked
        against the summary's count first.

        Raises:
            JobFailedError: a table's staged files hold another number of rows than the summary.
        """
        import pyarrow.dataset as pads

        from jobs.storage.delta import open_table

        run, run_date, final = self.run, self.run_date, self.final
        writes = []
        for name in TABLES:
            rows = self.summary["tables"].get(name, 0)
            table = open_table(run.output.join(name))
            if table is not None and (table.transaction_version(NIGHTLY_APP) or 0) >= date_version(run_date):
                continue  # published by an earlier attempt
            superseding = name == "errors" and table is not None
            if not rows and not superseding:
                continue
            found = pads.dataset(final.join(name).fs_path, filesystem=self.fs, format="parquet").count_rows() \
                if rows else 0
            if found != rows:
                raise JobFailedError(f"publishing run date {run_date}: {final.join(name).uri}/ holds {found} rows "
                                     f"of {name}, its summary counts {rows}; nothing more was published and the "
                                     f"staging stays under {staging.uri}/")
            by_reference = not superseding and _same_columns(table, name)
            writes.append(TableWrite(name, partial(self.dated, name), mode="overwrite", partition_by=["run_date"],
                                     predicate=f"run_date = '{run_date}'", key=run_date,
                                     app_transaction=(NIGHTLY_APP, date_version(run_date)),
                                     supersedes=partial(self.outcome_keys, table) if superseding else None,
                                     # The staged files themselves become the partition (copied, not read).
                                     parts=partial(parquet_files, final.join(name)) if by_reference else None,
                                     schema=partial(self.dated_schema, name),
                                     partition=("run_date", run_date)))
        return writes

    def dated_schema(self, name: str):
        import pyarrow as pa

        return SCHEMAS[name]().append(pa.field("run_date", pa.string()))

    def dated(self, name: str):
        """The date's staged rows of a table with their `run_date`, as a stream (a night's
        frames may be more rows than the driver should hold)."""
        import pyarrow as pa

        schema = self.dated_schema(name)
        if not self.summary["tables"].get(name, 0):
            return schema.empty_table()
        # Row group by row group (a dataset scan reads ahead several hundred MB here).
        staged = read_parts(self.fs, self.final.join(name), SCHEMAS[name]())
        batches = (pa.RecordBatch.from_arrays([*batch.columns, pa.repeat(self.run_date, batch.num_rows)],
                                              schema=schema)
                   for batch in staged)
        return pa.RecordBatchReader.from_batches(schema, batches)

    def outcome_keys(self, errors_table):
        """This date's outcomes that may supersede an earlier errors row: the keys of the
        objects with an open (not superseded) errors row of an earlier date, the only rows the
        merge can mark. Reading those first keeps a night of millions of outcomes out of
        memory; the merge matches the whole key."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        open_errors = errors_table.to_pyarrow_dataset().to_table(
            columns=["uri"], filter=pc.field("superseded_on").is_null() & (pc.field("run_date") < self.run_date))
        failed_before = pc.unique(open_errors.column("uri"))
        keys = [batch.filter(pc.is_in(batch.column("uri"), value_set=failed_before))
                for name in ("predictions", "errors") if self.summary["tables"].get(name, 0)
                for batch in pads.dataset(self.final.join(name).fs_path, filesystem=self.fs, format="parquet")
                .to_batches(columns=list(OUTCOME_KEY))]
        schema = pa.schema([SCHEMAS["errors"]().field(name) for name in OUTCOME_KEY])
        return self.run_date, pa.Table.from_batches([k for k in keys if k.num_rows], schema=schema)


def _same_columns(table, name: str) -> bool:
    """Whether a date's staged files can become the table's partition as they are: a new
    table, or one with the contract's columns (a table converted from the earlier layout
    may lack some: its dates are written through delta-rs, which adds them)."""
    if table is None:
        return True
    import pyarrow as pa

    names = [n for n in pa.schema(table.schema().to_arrow()).names if n != "run_date"]
    return names == SCHEMAS[name]().names


def partition_date(uri: str) -> str | None:
    for part in uri.split("/"):
        if part.startswith("run_date="):
            return part.split("=", 1)[1]
    return None
