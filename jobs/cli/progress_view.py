"""The run's live line on a terminal: the phase, a bar, objects done of all, errors so far,
objects per second and the time left (rich). It replaces itself as it goes and is gone
when the run ends (the result block follows); off a terminal it shows nothing, so logs,
pipes and tests get only the run's own lines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from jobs.runs.progress import showing_progress


class _Rate(ProgressColumn):
    """Objects per second (rich's own speed column is for bytes)."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f} objects/s" if task.speed else "", style="progress.data.speed")


@contextmanager
def live_progress(console: Console) -> Iterator[None]:
    """Report the runners' progress (jobs.runs.progress) on `console` while the block runs."""
    if not console.is_terminal:
        yield
        return
    # Not redirecting stdout and stderr: what Python code prints there (Ray Data's logger) goes
    # to the run's log file, not above the bar.
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[errors]} errors"), _Rate(), TimeRemainingColumn(),
                        console=console, transient=True, redirect_stdout=False, redirect_stderr=False)
    tasks: dict[str, TaskID] = {}

    def sink(phase: str, done: int, total: int | None, errors: int) -> None:
        if not progress.live.is_started:  # drawn from the first report on: other bars (ingest) may come first
            progress.start()
        if phase not in tasks:
            tasks[phase] = progress.add_task(phase, total=total, errors=0)
        progress.update(tasks[phase], completed=done, total=total, errors=errors)

    try:
        with showing_progress(sink):
            yield
    finally:
        if progress.live.is_started:
            progress.stop()
