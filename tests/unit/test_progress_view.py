"""A run's live progress: runners report (jobs.runs.progress), the CLI draws a rich bar on a
terminal and nothing elsewhere (jobs.cli.progress_view)."""

from __future__ import annotations

import io
import time

from rich.console import Console

from jobs.cli.progress_view import live_progress
from jobs.runs.progress import report, showing_progress
from jobs.runs.score import ScoringProgress


def test_scoring_progress_adds_up_blocks_and_reports_each():
    seen: list[tuple] = []
    with showing_progress(lambda *args: seen.append(args)):
        progress = ScoringProgress(total=40)
        progress.add(16, 1)
        progress.add(16, 0)
        progress.add(8, 2)
    assert seen == [("scoring", 16, 40, 1), ("scoring", 32, 40, 1), ("scoring", 40, 40, 3)]
    report("scoring", 1, 2, 0)  # outside: nobody listens, nothing breaks


def test_a_terminal_shows_the_phase_counts_errors_and_rate():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with live_progress(console):
        report("listing", 1000)
        progress = ScoringProgress(total=40)
        for _ in range(4):
            progress.add(10, 1)
            time.sleep(0.15)
        console.print("a line of the run")  # printed above the live bar, not into it
    drawn = out.getvalue()
    assert "scoring" in drawn and "40/40" in drawn and "4 errors" in drawn and "objects/s" in drawn
    assert "listing" in drawn and "a line of the run" in drawn


def test_off_a_terminal_nothing_is_drawn():
    out = io.StringIO()
    console = Console(file=out, force_terminal=False)
    with live_progress(console):
        ScoringProgress(total=3).add(3, 0)
        console.print("done")
    assert out.getvalue() == "done\n"


def test_nothing_is_drawn_before_the_first_report_so_other_bars_come_first():
    """The demo's upload bar runs inside the same console before the score job reports."""
    from rich.progress import Progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with live_progress(console):
        with Progress(console=console, transient=True) as upload:  # would fail beside a live display
            upload.add_task("uploading", total=2)
        assert out.getvalue().count("scoring") == 0
        ScoringProgress(total=1).add(1, 0)
    assert "scoring" in out.getvalue()
