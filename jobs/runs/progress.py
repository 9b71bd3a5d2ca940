"""Where a run says how far it is: objects listed, objects scored out of how many, errors so
far. A runner reports; whoever runs it chooses the display (the CLI: a live rich bar on a
terminal, `jobs.cli.progress_view`; nothing elsewhere, e.g. a notebook or a test).

    with showing_progress(sink):      # the CLI, around run_spec
        ... report("scoring", done=120, total=1200, errors=3)   # a runner, as blocks arrive
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Set in a submitted job's environment: its driver prints its progress as lines in the job's
# log, for `mediajobs submit --wait` to show (jobs.cli.progress_view).
PROGRESS_LINES_ENV = "MEDIAJOBS_PROGRESS_LINES"

# (phase, done, total or None while unknown, errors so far)
ProgressSink = Callable[[str, int, "int | None", int], None]

_SINK: ContextVar[ProgressSink | None] = ContextVar("mediajobs_progress", default=None)


@contextmanager
def showing_progress(sink: ProgressSink) -> Iterator[None]:
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def report(phase: str, done: int, total: int | None = None, errors: int = 0) -> None:
    sink = _SINK.get()
    if sink is not None:
        sink(phase, done, total, errors)
