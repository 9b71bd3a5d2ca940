"""`mediajobs tables ...`: an output's Delta tables (list, history, convert, vacuum)."""

from __future__ import annotations

import typer
from rich.console import Console


def table_commands(console: Console) -> typer.Typer:
    """The `tables` command group, printing on the CLI's `console`."""
    tables_app = typer.Typer(no_args_is_help=True, help="The Delta tables a job wrote under its output.")

    @tables_app.command("list")
    def tables_list(output: str = typer.Argument(..., help="The job's output, e.g. s3://bucket/scores/")) -> None:
        """Each table: its latest version, rows, and the run of its last commit."""
        from rich.table import Table

        from jobs.runs.table_maintenance import list_tables

        table = Table(title=f"tables under {output}")
        for column in ("table", "version", "rows", "last run", "operation"):
            table.add_column(column)
        for info in list_tables(output):
            table.add_row(info.name, str(info.version), str(info.rows), info.last_run_id, info.last_operation)
        console.print(table)

    @tables_app.command("history")
    def tables_history(output: str = typer.Argument(..., help="The job's output."),
                       table: str = typer.Argument(..., help="A table under it, e.g. predictions."),
                       limit: int = typer.Option(20, help="Commits shown, newest first.")) -> None:
        """The table's commits: version, time, operation, run."""
        import datetime as dt

        from jobs.errors import UsageError
        from jobs.runs.table_maintenance import stored_output
        from jobs.storage.delta import RUN_ID_KEY, open_table

        handle = open_table(stored_output(output).join(table))
        if handle is None:
            raise UsageError(f"TABLE: no Delta table {table!r} under {output}; `mediajobs tables list {output}` "
                             "shows what is there")
        for entry in handle.history(limit):
            when = dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            console.print(f"{entry['version']:>5}  {when}  {entry.get('operation', ''):<16} "
                          f"{entry.get(RUN_ID_KEY, '')}", markup=False)

    @tables_app.command("convert")
    def tables_convert(output: str = typer.Argument(..., help="An output written before mediajobs wrote Delta "
                                                              "tables.")) -> None:
        """Turn the Parquet-folder tables of the earlier layout into Delta tables, in place."""
        from jobs.runs.table_maintenance import convert_output

        converted = convert_output(output)
        console.print(f"converted {', '.join(converted)}" if converted else "nothing to convert", markup=False)

    @tables_app.command("vacuum")
    def tables_vacuum(output: str = typer.Argument(..., help="The job's output."),
                      retain_hours: int = typer.Option(168, help="Keep every version younger than this."),
                      dry_run: bool = typer.Option(True, "--dry-run/--delete",
                                                   help="List what would go (default), or delete it.")) -> None:
        """Delete the files no version within the retention window reads (time travel ends there)."""
        from jobs.runs.table_maintenance import vacuum_output

        for name, files in vacuum_output(output, retain_hours, dry_run).items():
            console.print(f"{name}: {len(files)} files {'would be' if dry_run else 'were'} deleted", markup=False)

    return tables_app
