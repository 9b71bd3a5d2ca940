"""Lines a worker says to the person running the job (rank 0's epoch lines, a resumed
checkpoint, a sample grid written): printed with a marker, which the `mediajobs` driver's
console relays (jobs.cli.run_log) while the rest of the workers' output goes to the run's
log file. Without the CLI (a notebook, `--verbose`) they are plain worker output.

Progress travels as lines too: `progress_line` writes one (a phase, how far, of how many,
errors so far, as JSON after a tag) and `parse_progress_line` reads it back. Rank 0 says
one per epoch; a submitted job's driver prints them into the job's log, where `mediajobs
submit --wait` turns them back into its live bar (jobs.cli.progress_view).
"""

from __future__ import annotations

import json

MARKER = "[mediajobs] "
PROGRESS_TAG = "progress "


def say(line: str) -> None:
    print(MARKER + line, flush=True)


def progress_line(phase: str, done: int, total: int | None = None, errors: int = 0) -> str:
    """The progress line (without MARKER): `progress {"phase": ..., "done": ..., ...}`."""
    return PROGRESS_TAG + json.dumps({"phase": phase, "done": done, "total": total, "errors": errors})


def parse_progress_line(line: str) -> tuple[str, int, int | None, int] | None:
    """(phase, done, total, errors) of a progress line (MARKER already removed), else None."""
    if not line.startswith(PROGRESS_TAG):
        return None
    try:
        fields = json.loads(line[len(PROGRESS_TAG):])
        return str(fields["phase"]), int(fields["done"]), \
            None if fields.get("total") is None else int(fields["total"]), int(fields.get("errors") or 0)
    except (ValueError, KeyError, TypeError):  # a line that only looks like one is an ordinary line
        return None


def say_progress(phase: str, done: int, total: int | None = None, errors: int = 0) -> None:
    say(progress_line(phase, done, total, errors))
