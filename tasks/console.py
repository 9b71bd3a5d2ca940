"""Lines a worker says to the person running the job (rank 0's epoch lines, a resumed
checkpoint, a sample grid written): printed with a marker, which the `mediajobs` driver's
console relays (jobs.cli.run_log) while the rest of the workers' output goes to the run's
log file. Without the CLI (a notebook, `--verbose`) they are plain worker output."""

from __future__ import annotations

MARKER = "[mediajobs] "


def say(line: str) -> None:
    print(MARKER + line, flush=True)
