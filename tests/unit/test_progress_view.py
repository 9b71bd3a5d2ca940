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


def test_a_progress_line_reads_back_as_the_report_it_was_and_other_lines_are_not_one():
    from tasks.console import parse_progress_line, progress_line

    assert parse_progress_line(progress_line("scoring", 120, 1200, 3)) == ("scoring", 120, 1200, 3)
    assert parse_progress_line(progress_line("listing", 5000)) == ("listing", 5000, None, 0)
    assert parse_progress_line("progress of the night: fine") is None  # looks like one, is not
    assert parse_progress_line('progress {"phase": "x"}') is None
    assert parse_progress_line("epoch epoch=1 loss=0.9") is None


def test_a_submitted_driver_prints_its_progress_as_lines_a_second_apart_and_each_phases_last(monkeypatch):
    """Off a terminal with PROGRESS_LINES_ENV set (a submitted job), reports become lines in
    the job's log: throttled, but the final count of each phase always."""
    from jobs.runs.progress import PROGRESS_LINES_ENV
    from tasks.console import MARKER, parse_progress_line

    monkeypatch.setenv(PROGRESS_LINES_ENV, "1")
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=40)  # narrower than a line: not wrapped
    with live_progress(console):
        progress = ScoringProgress(total=300)
        for _ in range(3):
            progress.add(100, 1)  # within a second: the first and the last are printed
        report("training", 1, 2)
        console.print("a line of the run")
    lines = out.getvalue().splitlines()
    assert lines[-1] == "a line of the run"
    reports = [parse_progress_line(line[len(MARKER):]) for line in lines[:-1]]
    assert reports == [("scoring", 100, 300, 1), ("scoring", 300, 300, 3), ("training", 1, 2, 0)]


def test_a_followed_job_log_shows_its_lines_and_turns_progress_lines_into_the_live_line():
    """`submit --wait`: the log arrives in chunks that split lines anywhere."""
    from jobs.cli.progress_view import JobLogLines
    from tasks.console import MARKER, progress_line

    log = (f"submitted\n{MARKER}{progress_line('scoring', 10, 40, 1)}\nscored 40\n"
           f"{MARKER}{progress_line('scoring', 40, 40, 2)}\n{MARKER}epoch epoch=1\nno newline at the end")
    written: list[str] = []
    seen: list[tuple] = []
    lines = JobLogLines(written.append)
    with showing_progress(lambda *args: seen.append(args)):
        for start in range(0, len(log), 7):
            lines(log[start:start + 7])
        lines.flush()
    assert "".join(written) == f"submitted\nscored 40\n{MARKER}epoch epoch=1\nno newline at the end\n"
    assert seen == [("scoring", 10, 40, 1), ("scoring", 40, 40, 2)]

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with live_progress(console):
        JobLogLines(lambda text: console.print(text, end="", highlight=False))(log)
    drawn = out.getvalue()
    assert "scoring" in drawn and "40/40" in drawn and "2 errors" in drawn and "scored 40" in drawn
    assert '"phase"' not in drawn  # the progress lines themselves are not shown


def test_training_epochs_show_as_epochs_without_an_objects_rate():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with live_progress(console):
        for epoch in range(1, 4):
            report("training", epoch, 3)
            time.sleep(0.1)
    drawn = out.getvalue()
    assert "training" in drawn and "3/3" in drawn
    assert "objects/s" not in drawn and "errors" not in drawn


def test_generated_samples_show_as_samples_per_second_without_errors():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with live_progress(console):
        for done in (64, 128):
            report("generating", done, 128)
            time.sleep(0.15)
    drawn = out.getvalue()
    assert "generating" in drawn and "128/128" in drawn and "samples/s" in drawn and "errors" not in drawn
