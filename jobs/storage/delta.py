"""The result tables under a job's output as Delta Lake tables (delta-rs, no catalog service).

A Delta table is a folder of Parquet files plus `_delta_log/`, whose numbered commits say
which files make up each version; a commit is a put-if-absent of the next log entry, so
readers always see a whole version and two writers conflict instead of overwriting each
other. Every commit of a run carries the run's id (`mediajobs.run_id` in the commit's
metadata), so a commit retried after a lost answer is recognised instead of made twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from jobs.errors import MediaJobsError
from jobs.storage.objects import Location, list_objects, parse_uri
from jobs.storage.settings import resolve_s3_settings

if TYPE_CHECKING:
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.transaction import RemoveAction

__all__ = ["COMMIT_KEY", "DELTA_LOG", "FENCE_KEY", "RUN_ID_KEY", "LegacyLayoutError", "TableExistsError",
           "commit_parts",
           "committed_version", "convert_table", "delta_tables_under",
           "fence_table", "is_delta_table", "open_table", "read_table", "storage_options", "table_path",
           "vacuum_table", "write_table"]

DELTA_LOG = "_delta_log"
RUN_ID_KEY = "mediajobs.run_id"  # in each commit's metadata: the run that made it
COMMIT_KEY = "mediajobs.commit"  # ... and what it was (the run id, or run id/date for a nightly date)
FENCE_KEY = "mediajobs.fenced_by"  # a table property: the run that last took the output over
ROW_GROUP_ROWS = 131_072
TARGET_FILE_BYTES = 32 * 2 ** 20
HISTORY_DEPTH = 20  # commits searched for a run's own commit when a commit is retried


class TableExistsError(MediaJobsError):
    """A table this run meant to create was created by another run in the meantime."""


class LegacyLayoutError(MediaJobsError):
    """An output table was written by the Parquet-folder layout of mediajobs before Delta tables."""

    headline = "output in an earlier layout"
    exit_code = 2


def storage_options(location: Location) -> dict[str, str] | None:
    """delta-rs's options for the store a location is in: the same endpoint and key pair as
    boto3 and pyarrow use (resolved from the environment, AWS config or the local stack),
    with `conditional_put: etag` so that commits are put-if-absent on any S3 store."""
    if location.scheme != "s3":
        return None
    settings = resolve_s3_settings()
    options = {"AWS_REGION": settings.region, "conditional_put": "etag"}
    if settings.endpoint:
        options["AWS_ENDPOINT_URL"] = settings.endpoint
        if settings.endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if settings.access_key and settings.secret_key:
        options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"] = settings.access_key, settings.secret_key
    return options


def table_path(location: Location) -> str:
    """What delta-rs takes for a location: `s3://bucket/key` or a local path, no trailing slash."""
    location = location.as_prefix()
    return f"s3://{location.bucket}/{location.key.rstrip('/')}" if location.scheme == "s3" else location.key.rstrip("/")


def is_delta_table(location: Location) -> bool:
    return any(True for _ in list_objects(location.as_prefix().join(DELTA_LOG).uri))


def delta_tables_under(output: Location) -> list[str]:
    """The names of the Delta tables directly under an output (folders holding `_delta_log/`),
    found without listing their files: one delimited listing, then one probe per folder."""
    output = output.as_prefix()
    if output.scheme == "s3":
        from jobs.storage.objects import s3_client

        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=output.bucket, Prefix=output.key,
                                                                      Delimiter="/")
        folders = [p["Prefix"][len(output.key):].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]
    else:
        from pathlib import Path

        root = Path(output.key)
        folders = sorted(entry.name for entry in root.iterdir() if entry.is_dir()) if root.is_dir() else []
    return [name for name in folders if not name.startswith("_") and is_delta_table(output.join(name))]


def open_table(location: Location, version: int | None = None) -> DeltaTable | None:
    """The table's latest (or a given) version, or None where no table is."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(table_path(location), version=version, storage_options=storage_options(location))
    except TableNotFoundError:
        return None


def read_table(uri: str, columns: list[str] | None = None, version: int | None = None) -> pa.Table:
    """A result table as one pyarrow Table (for small tables, reports and tests): a Delta
    table's latest (or given) version; a folder of plain Parquet files (the staging, and
    outputs of the earlier layout) as the files it holds."""
    location = parse_uri(uri).as_prefix()
    table = open_table(location, version)
    if table is not None:
        return table.to_pyarrow_table(columns=columns)
    import pyarrow.dataset as pads

    from jobs.storage.objects import filesystem_for

    dataset = pads.dataset(location.fs_path.rstrip("/"), filesystem=filesystem_for(location), format="parquet")
    return dataset.to_table(columns=columns)


def committed_version(table: DeltaTable | None, commit_key: str) -> int | None:
    """The version of the commit marked `commit_key` (see `write_table`), among the table's
    latest commits; None if there is none."""
    if table is None:
        return None
    for entry in table.history(HISTORY_DEPTH):
        if entry.get(COMMIT_KEY) == commit_key:
            return int(entry["version"])
    return None


def write_table(location: Location, table: DeltaTable | None, rows: pa.Table | pa.RecordBatchReader, run_id: str,
                commit_key: str, *, mode: Literal["overwrite", "append"], partition_by: list[str] | None = None,
                predicate: str | None = None,
                app_transaction: tuple[str, int] | None = None, supersedes: tuple[str, pa.Table] | None = None) -> int:
    """Commit `rows` to the table as one version, marked with `run_id` and `commit_key`
    (so that a retry whose first answer was lost finds it); returns the version.

    `table` is the handle the commit is checked against: Delta refuses the commit
    (`CommitFailedError`) when a commit since that version conflicts with it, which is how
    a run that lost its lease is fenced out (see `fence_table`). None creates the table,
    and only creates it: where another run created it since, this raises `TableExistsError`
    (a write by path would otherwise load that run's version and replace it).
    `mode="overwrite"` replaces the whole table (schema included), or with `predicate`
    only the rows it matches; `app_transaction` (app id, version) is Delta's idempotency
    marker (`DeltaTable.transaction_version`). `supersedes`, for an existing table of the
    errors schema and `rows` of one run date: (that date, the (uri, etag, model_id) of its
    outcomes); the same commit (a merge) adds `rows` and marks every earlier row of those
    keys not superseded yet `superseded_on` the date.
    """
    from deltalake import CommitProperties, Transaction, WriterProperties, write_deltalake

    # Row groups of 128k rows: delta-rs holds a row group in memory while it writes it (the
    # default, 1M rows of a night's frames, made the publish the driver's largest step).
    bounded = WriterProperties(max_row_group_size=ROW_GROUP_ROWS)
    commit = CommitProperties(custom_metadata={RUN_ID_KEY: run_id, COMMIT_KEY: commit_key},
                              app_transactions=[Transaction(*app_transaction)] if app_transaction else None)
    if table is None:
        from deltalake.exceptions import DeltaError

        try:
            write_deltalake(table_path(location), rows, mode="error", partition_by=partition_by,
                            storage_options=storage_options(location), commit_properties=commit,
                            writer_properties=bounded, target_file_size=TARGET_FILE_BYTES)
        except DeltaError as exc:
            if "already exists" in str(exc) or "Version 0 already exists" in str(exc):
                raise TableExistsError(f"{location.uri} was created by another run since this run looked") from None
            raise
    elif supersedes is not None:
        _merge_superseding(table, rows, *supersedes, commit)
    else:
        # The ignore: deltalake's overloads take `predicate` with mode "overwrite" only (the function
        # itself takes it with either mode), and mypy gives up splitting the unions of this call (misc).
        write_deltalake(table, rows, mode=mode, partition_by=partition_by,  # type: ignore[call-overload, misc]
                        predicate=predicate,
                        # A plain run's table is replaced whole, schema included; a date added to a
                        # table of an earlier schema (a converted output) adds the new columns.
                        schema_mode="overwrite" if mode == "overwrite" and predicate is None else "merge",
                        commit_properties=commit, writer_properties=bounded, target_file_size=TARGET_FILE_BYTES)
    return committed_version(open_table(location), commit_key) or 0


def commit_parts(location: Location, table: DeltaTable | None, parts: list[str], schema: pa.Schema, run_id: str,
                 commit_key: str, *, partition: tuple[str, str], app_transaction: tuple[str, int] | None = None) -> int:
    """Commit staged Parquet files (in the table's schema without its partition column) as
    one version that replaces the partition `column = value`; returns the version.

    The files are copied into the table's folder first (on S3 a server-side copy: no row
    passes through this process, whatever the date's size), then one transaction adds them
    and removes the partition's earlier files, checked against `table` as `write_table`'s
    commits are. A table that is not there yet is created empty first: files in a folder
    without a Delta log would read as the earlier layout if the run stopped before its
    commit (and are never seen by readers otherwise: `vacuum` removes them).

    Raises:
        TableExistsError: another run created the table since this run looked.
        CommitFailedError: a commit since `table`'s version conflicts (a fence).
    """
    import json
    import time

    import pyarrow.parquet as pq
    from deltalake import CommitProperties, DeltaTable, Transaction
    from deltalake.exceptions import DeltaError
    from deltalake.transaction import AddAction

    from jobs.storage.objects import filesystem_for

    if table is None:
        try:
            DeltaTable.create(table_path(location), schema=schema, mode="error", partition_by=[partition[0]],
                              storage_options=storage_options(location),
                              commit_properties=CommitProperties(custom_metadata={RUN_ID_KEY: run_id}))
        except DeltaError as exc:
            if "already exists" in str(exc):
                raise TableExistsError(f"{location.uri} was created by another run since this run looked") from None
            raise
        table = open_table(location)
        assert table is not None  # created just above
    column, value = partition
    folder = location.join(f"{column}={value}")
    fs = filesystem_for(location)
    if location.scheme == "file":
        fs.create_dir(folder.fs_path, recursive=True)
    actions: list[AddAction | RemoveAction] = []
    for i, source in enumerate(parts):
        name = f"part-{run_id}-{i:05d}.parquet"  # the same names on a retry: a copy replaces its own
        fs.copy_file(source, f"{folder.fs_path}/{name}")
        rows = pq.read_metadata(source, filesystem=fs).num_rows
        actions.append(AddAction(f"{column}={value}/{name}", fs.get_file_info(f"{folder.fs_path}/{name}").size,
                                 {column: value}, int(time.time() * 1000), True, json.dumps({"numRecords": rows})))
    commit = CommitProperties(custom_metadata={RUN_ID_KEY: run_id, COMMIT_KEY: commit_key},
                              app_transactions=[Transaction(*app_transaction)] if app_transaction else None)
    table.create_write_transaction(actions, mode="overwrite", schema=schema, partition_by=[column],
                                   partition_filters=[(column, "=", value)], commit_properties=commit)
    return committed_version(open_table(location), commit_key) or 0


def _merge_superseding(table: DeltaTable, rows: pa.Table, run_date: str, keys: pa.Table, commit) -> None:
    """One MERGE commit: insert a date's rows, and mark the earlier rows their keys supersede."""
    import pyarrow as pa

    rows = rows if isinstance(rows, pa.Table) else rows.read_all()  # a date's errors: small next to its rows
    schema = rows.schema
    n = keys.num_rows
    markers = pa.table({name: (keys.column(name).cast(schema.field(name).type) if name in ("uri", "etag", "model_id")
                               else pa.array([run_date] * n, pa.string()) if name == "run_date"
                               else pa.nulls(n, schema.field(name).type)) for name in schema.names}, schema=schema)
    source = pa.concat_tables([rows.append_column("_kind", pa.array(["row"] * rows.num_rows, pa.string())),
                               markers.append_column("_kind", pa.array(["supersede"] * n, pa.string()))])
    (table.merge(source, predicate="s._kind = 'supersede' AND t.uri = s.uri AND t.etag = s.etag AND "
                                   "t.model_id = s.model_id AND t.run_date < s.run_date AND t.superseded_on IS NULL",
                 source_alias="s", target_alias="t", streamed_exec=False, commit_properties=commit)
     .when_matched_update(updates={"superseded_on": "s.run_date"})
     .when_not_matched_insert(updates={name: f"s.{name}" for name in schema.names}, predicate="s._kind = 'row'")
     .execute())


def fence_table(location: Location, run_id: str, schema: pa.Schema | None = None,
                partition_by: list[str] | None = None) -> None:
    """Make every commit prepared before now conflict: a table-property change, which Delta
    counts as a metadata change, and a writer whose snapshot predates one is refused. A
    table that is not there yet is created empty (with `schema`), so a stale run cannot
    create it either."""
    from deltalake import CommitProperties, DeltaTable

    # Not RUN_ID_KEY: that marks a run's data commit, and a retried commit looks for it.
    commit = CommitProperties(custom_metadata={FENCE_KEY: run_id})
    table = open_table(location)
    if table is not None:
        table.alter.set_table_properties({FENCE_KEY: run_id}, raise_if_not_exists=False, commit_properties=commit)
    elif schema is not None:
        DeltaTable.create(table_path(location), schema=schema, mode="ignore", partition_by=partition_by,
                          configuration={FENCE_KEY: run_id}, storage_options=storage_options(location),
                          commit_properties=commit, raise_if_key_not_exists=False)


def check_not_legacy(output: Location, tables: list[str], convert_hint: Callable[[str], str]) -> None:
    """Refuse an output whose tables are Parquet folders of the earlier layout (no `_delta_log`).

    Raises:
        LegacyLayoutError: naming the table and how to convert it.
    """
    for name in tables:
        folder = output.join(name).as_prefix()
        has_files = any(o.uri.endswith(".parquet") for o in list_objects(folder.uri))
        if has_files and not is_delta_table(folder):
            raise LegacyLayoutError(
                f"output: {folder.uri} holds Parquet files of the earlier mediajobs layout, not a Delta table; "
                f"convert the output in place with `{convert_hint(output.uri)}` (its rows stay), or write to a "
                "new output. Nothing was started.")


def convert_table(location: Location, partition_by: list[str] | None = None, schema: pa.Schema | None = None) -> bool:
    """Turn a folder of Parquet files into a Delta table in place (its files become version 0),
    then add the columns of `schema` it lacks (null in its old rows: a table of the earlier
    layout predates `scored_at` and `superseded_on`); False when it already is one or holds
    nothing."""
    import pyarrow as pa
    from deltalake import Schema, convert_to_deltalake

    folder = location.as_prefix()
    if is_delta_table(folder) or not any(o.uri.endswith(".parquet") for o in list_objects(folder.uri)):
        return False
    partitions = Schema.from_arrow(pa.schema([(name, pa.string()) for name in partition_by])) if partition_by else None
    convert_to_deltalake(table_path(folder), partition_by=partitions, partition_strategy="hive" if partitions else None,
                         storage_options=storage_options(folder))
    if schema is not None:
        table = open_table(folder)
        assert table is not None  # converted just above
        present = {field.name for field in table.schema().fields}
        missing = [field for field in schema if field.name not in present]
        if missing:
            table.alter.add_columns(Schema.from_arrow(pa.schema(missing)).fields)
    return True


def vacuum_table(location: Location, retain_hours: int, dry_run: bool) -> list[str]:
    """Delete (or, dry, list) the files no version younger than `retain_hours` still reads."""
    table = open_table(location)
    if table is None:
        return []
    return table.vacuum(retention_hours=retain_hours, dry_run=dry_run, enforce_retention_duration=False)
