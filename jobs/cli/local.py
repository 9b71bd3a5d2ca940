"""`mediajobs local ...`: the embedded local stack's commands (up, status, env, down)."""

from __future__ import annotations

import typer
from rich.console import Console


def local_commands(console: Console) -> typer.Typer:
    """The `local` command group, printing on the CLI's `console`."""
    local_app = typer.Typer(no_args_is_help=True,
                            help="The embedded local stack: a Ray head and a SeaweedFS S3 server.")

    def print_status(stack_status) -> bool:
        from rich.table import Table

        table = Table(title=f"local stack ({stack_status.state_dir})")
        for column in ("component", "endpoint", "pid", "health"):
            table.add_column(column)
        healthy = True
        for component in stack_status.components:
            healthy &= bool(component.healthy)
            table.add_row(component.name, component.endpoint or "-", str(component.pid or "-"),
                          "[green]healthy[/]" if component.healthy else "[red]down[/]")
        console.print(table)
        if stack_status.metrics_url:
            console.print(f"metrics (Prometheus): {stack_status.metrics_url}", markup=False)
        return healthy

    @local_app.command("up")
    def local_up() -> None:
        """Start (or keep) the local Ray head and S3 server."""
        from cluster.local_stack import status, up

        up()
        print_status(status())

    @local_app.command("status")
    def local_status() -> None:
        """Show endpoints and health of the local stack."""
        from cluster.local_stack import status

        if not print_status(status()):
            raise typer.Exit(1)

    @local_app.command("env")
    def local_env() -> None:
        """Print `export ...` lines that point a shell at the local stack: eval "$(mediajobs local env)"."""
        from cluster.local_stack import env_lines

        for line in env_lines():
            typer.echo(line)

    @local_app.command("down")
    def local_down() -> None:
        """Stop what `local up` started (data and credentials are kept)."""
        from cluster.local_stack import down

        for line in down() or ["nothing was running"]:
            console.print(line, markup=False)

    return local_app
