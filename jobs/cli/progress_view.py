"""The run's live line on a terminal: the phase, a bar, objects done of all, errors so far,
objects per second and the time left (rich). It replaces itself as it goes and is gone
when the run ends (the result block follows); off a terminal it shows nothing, so logs,
pipes and tests get only the run's own lines.

A submitted job's driver is off a terminal, but somebody may be following it (`mediajobs
submit --wait`): there (PROGRESS_LINES_ENV set, by `jobs.submission.submit`) the reports are
printed as progress lines (`tasks.console.progress_line`), a few a second at most, and
`JobLogLines` on the follower's side turns them back into this same live line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
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

from jobs.runs.progress import PROGRESS_LINES_ENV, ProgressSink, report, showing_progress
from tasks.console import MARKER, parse_progress_line, progress_line

# A submitted driver's progress lines: at most one a second per phase, plus each phase's last.
_LINE_INTERVAL_S = 1.0
# A phase's unit (objects unless named here), and the units that can fail one by one.
_UNITS = {"training": "epochs", "generating": "samples", "stylizing": "images"}
_FALLIBLE = {"objects", "images"}


class _Rate(ProgressColumn):
    """Objects (samples, images) per second (rich's own speed column is for bytes); nothing for epochs."""

    def render(self, task) -> Text:
        unit = task.fields.get("unit", "objects")
        if unit == "epochs" or not task.speed:
            return Text("")
        return Text(f"{task.speed:,.0f} {unit}/s", style="progress.data.speed")


class _Errors(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.fields['errors']} errors" if task.fields.get("unit", "objects") in _FALLIBLE else "")


@contextmanager
def live_progress(console: Console) -> Iterator[ProgressSink | None]:
    """Report the runners' progress (jobs.runs.progress) on `console` while the block runs;
    yields the sink (for reports from other threads: the worker relay), or None."""
    if not console.is_terminal:
        if os.environ.get(PROGRESS_LINES_ENV):
            lines = _line_sink(console)
            with showing_progress(lines):
                yield lines
        else:
            yield None
        return
    # Not redirecting stdout and stderr: what Python code prints there (Ray Data's logger) goes
    # to the run's log file, not above the bar.
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Errors(), _Rate(),
                        TimeRemainingColumn(), console=console, transient=True, redirect_stdout=False,
                        redirect_stderr=False)
    tasks: dict[str, TaskID] = {}

    def sink(phase: str, done: int, total: int | None, errors: int) -> None:
        if not progress.live.is_started:  # drawn from the first report on: other bars (ingest) may come first
            progress.start()
        if phase not in tasks:
            tasks[phase] = progress.add_task(phase, total=total, errors=0, unit=_UNITS.get(phase, "objects"))
        progress.update(tasks[phase], completed=done, total=total, errors=errors)

    try:
        with showing_progress(sink):
            yield sink
    finally:
        if progress.live.is_started:
            progress.stop()


def _line_sink(console: Console) -> ProgressSink:
    """Reports as progress lines in the job's log, throttled per phase."""
    last: dict[str, float] = {}

    def sink(phase: str, done: int, total: int | None, errors: int) -> None:
        now = time.monotonic()
        if now - last.get(phase, float("-inf")) < _LINE_INTERVAL_S and done != total:
            return
        last[phase] = now
        # soft_wrap: a log's console is 80 columns wide, and a wrapped line would not parse.
        console.print(MARKER + progress_line(phase, done, total, errors), markup=False, highlight=False,
                      emoji=False, soft_wrap=True)

    return sink


class JobLogLines:
    """A job's log as it streams in, in chunks: each whole line is written, except progress
    lines, which are reported (to the live line of `live_progress`, when one shows)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._partial = ""

    def __call__(self, chunk: str) -> None:
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            reported = parse_progress_line(line[len(MARKER):]) if line.startswith(MARKER) else None
            if reported is None:
                self._write(line + "\n")
            else:
                report(*reported)

    def flush(self) -> None:
        """The last line, if the log did not end with a newline."""
        if self._partial:
            partial, self._partial = self._partial, ""
            self(partial + "\n")


def show_followed_log(console: Console, follow: Callable[[Callable[[str], None]], None]) -> None:
    """Show a submitted job's log as `follow` streams it (to the writer it is given) until the
    job ends: its lines as they come, and on a terminal the job's progress (its driver's
    progress lines) as a live line below them."""

    def write(text: str) -> None:  # through the console, so the live line stays below
        console.print(text, end="", markup=False, highlight=False, emoji=False, soft_wrap=True)

    lines = JobLogLines(write)
    with live_progress(console):
        follow(lines)
        lines.flush()
