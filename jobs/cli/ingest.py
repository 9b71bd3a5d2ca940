"""`mediajobs ingest ...`: datasets copied into object storage (cifar10, digits, folder), and
the progress bar they and the demo's upload show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console


class ProgressBar:
    """A rich progress bar exposed as a `(done, total)` callback."""

    def __init__(self, console: Console, description: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), console=console, transient=False)
        self._task = self._bar.add_task(description, total=None)

    @classmethod
    def bar(cls, console: Console, description: str) -> Callable[[int, int], None]:
        """A callback that opens its bar on first use and closes it when done == total."""
        holder: dict = {}

        def update(done: int, total: int) -> None:
            if "bar" not in holder:
                holder["bar"] = cls(console, description).__enter__()
            holder["bar"](done, total)
            if done >= total:
                holder.pop("bar").__exit__(None, None, None)

        return update

    def __enter__(self) -> ProgressBar:
        self._bar.__enter__()
        return self

    def __call__(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)


def ingest_commands(console: Console, echo: Callable[[str], None]) -> typer.Typer:
    """The `ingest` command group, printing on the CLI's `console` and `echo`."""
    ingest_app = typer.Typer(no_args_is_help=True, help="Copy datasets into object storage.")

    @ingest_app.command("cifar10")
    def ingest_cifar10_cmd(
        dest: str = typer.Option(..., "--dest", help="Destination URI, e.g. s3://media/cifar10/"),
        source: Path | None = typer.Option(None, "--source", help="The official cifar-10-python.tar.gz; "
                                                                       "without it, it is downloaded (MD5-checked)."),
    ) -> None:
        """Write CIFAR-10 as PNGs in class folders (train/, test/)."""
        from jobs.datasets.ingest import ingest_cifar10

        with ProgressBar(console, "ingesting CIFAR-10") as progress:
            counts = ingest_cifar10(dest, str(source) if source else None, progress=progress)
        echo(f"CIFAR-10 -> {dest}: {counts}")

    @ingest_app.command("digits")
    def ingest_digits_cmd(
        dest: str = typer.Option(..., "--dest", help="Destination URI, e.g. s3://media/digits/"),
        source: str = typer.Option("sklearn", "--source", help="sklearn: 1,797 real handwritten digits shipped "
                                                               "with scikit-learn (no download); mnist: MNIST "
                                                               "(downloads)."),
        limit: int | None = typer.Option(None, "--limit", min=1, help="Write at most this many images."),
    ) -> None:
        """Write real handwritten digits as 28x28 grayscale PNGs in class folders (0/ ... 9/), for the GAN."""
        from jobs.datasets.ingest import ingest_digits

        with ProgressBar(console, f"ingesting digits ({source})") as progress:
            counts = ingest_digits(dest, source, limit, progress=progress)
        echo(f"digits -> {dest}: {counts}")

    @ingest_app.command("folder")
    def ingest_folder_cmd(
        src: Path = typer.Argument(..., help="Local folder to upload."),
        dest: str = typer.Option(..., "--dest", help="Destination URI, e.g. s3://media/photos/"),
    ) -> None:
        """Upload a local tree (parallel; unchanged objects are skipped)."""
        from jobs.datasets.ingest import ingest_folder

        with ProgressBar(console, f"uploading {src}") as progress:
            counts = ingest_folder(src, dest, progress=progress)
        echo(f"{src} -> {dest}: {counts}")

    return ingest_app
