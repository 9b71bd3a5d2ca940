"""Making a committed run date visible: the staging layout of incremental runs, the copy of
a date's staged tables and summary to where readers look (after the commit point only), and
the tidy-up every run does first. See jobs/nightly.py for the whole flow."""

from __future__ import annotations

import json

from jobs.nightly_tables import TABLES
from jobs.storage import delete_prefix, filesystem_for, list_objects, read_bytes

STAGING = "_staging"
FINAL = "final"  # under a date's staging: its tables and summary, as they will be published
SUMMARY = "summary.json"


def tidy(output, committed: dict[str, str], run_date: str, echo) -> None:
    """Before a run, under the lease (nothing else writes here): publish committed dates a
    kill left unpublished; drop the staging of other uncommitted dates (run dates move
    forward: they can never commit) and any partition of a date never committed. This
    date's staging stays: what an earlier attempt finished is reused."""
    staged = {partition_date(o.uri) for o in list_objects(output.join(STAGING).uri)} - {None}
    for date in sorted(staged):
        if date in committed:
            echo(f"run date {date} was committed by run {committed[date]} but not published in full (the run was "
                 "stopped); publishing it now")
            publish_committed(output, date, committed[date], echo)
        elif date != run_date:
            delete_prefix(output.join(STAGING, f"run_date={date}").uri)
    for table in TABLES:
        dates = {partition_date(o.uri) for o in list_objects(output.join(table).uri)}
        for date in sorted(d for d in dates if d and d not in committed):
            delete_prefix(output.join(table, f"run_date={date}").uri)


def publish_committed(output, run_date: str, run_id: str, echo) -> str:
    """Make a committed date's staged tables visible (`<table>/run_date=D/`), then its
    summary (`runs/<run_id>/summary.json`, last: once it is there, so is every table), its
    report, and drop its staging. Idempotent, so a publish cut short is finished by the
    next run. Returns the report's URI ("" if it could not be drawn)."""
    staging = output.join(STAGING, f"run_date={run_date}")
    final = staging.join(FINAL).as_prefix()
    fs = filesystem_for(output)
    staged = sorted((o.uri[len(final.uri):] for o in list_objects(final.uri)), key=lambda name: name == SUMMARY)
    for name in staged:  # "<table>/part-NNNNN.parquet", then "summary.json"
        if name == SUMMARY:
            target = output.join("runs", run_id, SUMMARY)
        else:
            table, file = name.split("/", 1)
            target = output.join(table, f"run_date={run_date}", file)
        if target.scheme == "file":
            fs.create_dir(target.fs_path.rsplit("/", 1)[0], recursive=True)
        fs.copy_file(final.join(name).fs_path, target.fs_path)  # S3: a server-side copy
    report_uri = ""
    if SUMMARY in staged:
        try:
            from jobs.report import read_run_tables, write_report

            summary = json.loads(read_bytes(final.join(SUMMARY).uri))
            report_uri = write_report(output.uri, summary, read_run_tables(output.uri, run_date))
        except Exception as exc:  # noqa: BLE001 - the scores matter more than their pictures
            echo(f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
                 f"`mediajobs report {output.uri} --run-date {run_date}` tries again")
    delete_prefix(staging.uri)
    return report_uri


def partition_date(uri: str) -> str | None:
    for part in uri.split("/"):
        if part.startswith("run_date="):
            return part.split("=", 1)[1]
    return None
