"""Looking after an output's Delta tables: what is there, converting the earlier layout, vacuum.

Retention: a run replaces (plain jobs) or appends to (nightly) its tables; the files an
older version reads stay until `vacuum` deletes the ones no version younger than the
retention window needs. Time travel reaches back as far as that window.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.errors import UsageError
from jobs.nightly.tables import SCHEMAS
from jobs.storage.delta import RUN_ID_KEY, convert_table, delta_tables_under, open_table, vacuum_table
from jobs.storage.objects import Location, list_objects, parse_uri

__all__ = ["DEFAULT_RETAIN_HOURS", "TableInfo", "convert_output", "list_tables", "stored_output", "vacuum_output"]

DEFAULT_RETAIN_HOURS = 7 * 24  # a week of versions stays readable (Delta's own default)
PARTITIONED = ("run_date",)  # the partition column of nightly tables, in folder names


@dataclass(frozen=True)
class TableInfo:
    name: str
    uri: str
    version: int
    rows: int
    last_run_id: str
    last_operation: str


def stored_output(output_uri: str) -> Location:
    """The output, once it is known that something is stored under it: a mistyped output is
    told, not shown as an output without tables.

    Raises:
        StorageError: it cannot be listed (no such bucket, no permission).
        UsageError: nothing is stored under it.
    """
    output = parse_uri(output_uri).as_prefix()
    if next(iter(list_objects(output.uri)), None) is None:
        raise UsageError(f"OUTPUT: nothing is stored under {output.uri}; give the output URI of a job that "
                         "wrote tables (score, generate or stylize)")
    return output


def _parquet_folders(output_uri: str) -> list[str]:
    """Folders directly under the output holding Parquet files but no Delta log (the earlier layout)."""
    prefix = parse_uri(output_uri).as_prefix().uri
    names = set()
    for obj in list_objects(prefix):
        parts = obj.uri[len(prefix):].split("/")
        if len(parts) > 1 and not parts[0].startswith("_") and obj.uri.endswith(".parquet"):
            names.add(parts[0])
    return sorted(names - set(delta_tables_under(parse_uri(output_uri))))


def list_tables(output_uri: str) -> list[TableInfo]:
    """Each Delta table under the output: its latest version, rows and last commit."""
    output = stored_output(output_uri)
    infos = []
    for name in delta_tables_under(output):
        table = open_table(output.join(name))
        assert table is not None  # delta_tables_under found its log
        last = table.history(1)[0]
        rows = sum(int(n) for n in table.get_add_actions(flatten=True).column("num_records").to_pylist() if n)
        infos.append(TableInfo(name, output.join(name).uri + "/", table.version(), rows,
                               str(last.get(RUN_ID_KEY, "")), str(last.get("operation", ""))))
    return infos


def convert_output(output_uri: str) -> list[str]:
    """Turn every Parquet-folder table of the earlier layout under the output into a Delta
    table in place (its rows stay; nightly tables keep `run_date` as a partition);
    returns the names converted."""
    output = stored_output(output_uri)
    converted = []
    for name in _parquet_folders(output.uri):
        location = output.join(name)
        partitioned = any("/run_date=" in o.uri for o in list_objects(location.as_prefix().uri))
        # A nightly table keeps taking dates: it gets today's columns. A plain run's table is
        # replaced whole, schema included, by the next run.
        schema = SCHEMAS[name]() if partitioned and name in SCHEMAS else None
        if convert_table(location, list(PARTITIONED) if partitioned else None, schema):
            converted.append(name)
    return converted


def vacuum_output(output_uri: str, retain_hours: int = DEFAULT_RETAIN_HOURS,
                  dry_run: bool = True) -> dict[str, list[str]]:
    """Per Delta table, the files older than the window that no kept version reads: deleted,
    or only listed when `dry_run`."""
    output = stored_output(output_uri)
    return {name: vacuum_table(output.join(name), retain_hours, dry_run)
            for name in delta_tables_under(output)}
