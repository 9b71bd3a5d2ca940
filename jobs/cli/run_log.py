"""What a job prints that is not ours goes to a log file, not the terminal.

A run's driver process hears from many voices: Ray (its start-up, the worker logs it forwards,
Ray Data's progress blocks), TensorFlow's C++ logging in every worker, Ray Train's reports.
Under `RunLog` the process's own stdout and stderr (file descriptors 1 and 2, so C++ loggers
and child processes are caught too) write to `<state dir>/logs/<command>-<time>.log`; the
console writes to the terminal through duplicates of the original descriptors.

Worker lines meant for people (rank 0's epoch lines, early stopping, a resumed checkpoint)
reach the console anyway: `relay_worker_lines` hooks the stream of worker output Ray's
driver receives and echoes the lines that start with a marker (`tasks.console.say`).
`--verbose` leaves everything as it was: all output on the terminal, no log file.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from cluster.localstate import mediajobs_home
from jobs.runs.progress import ProgressSink
from tasks.console import MARKER, parse_progress_line

__all__ = ["RunLog", "relay_worker_lines"]

_RELAY = "mediajobs_console"


class RunLog:
    """Fds 1 and 2 into a fresh log file while the block runs; `.stdout` / `.stderr` write
    where they wrote before (the terminal, a pipe). Not reentrant: one per process."""

    def __init__(self, command: str, folder: Path | None = None) -> None:
        folder = folder or mediajobs_home() / "logs"
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = folder / f"{command}-{stamp}-{os.getpid()}.log"
        self.stdout: TextIO = sys.stdout
        self.stderr: TextIO = sys.stderr
        self._saved: list[int] = []

    def __enter__(self) -> RunLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        with open(self.path, "ab", buffering=0) as log:
            self._saved = [os.dup(1), os.dup(2)]
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        # Line-buffered: a line said is a line seen, also when the job dies right after.
        self.stdout = open(self._saved[0], "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")
        self.stderr = open(self._saved[1], "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")
        return self

    def __exit__(self, *exc) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.stdout.flush()
        self.stderr.flush()
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = []


def relay_worker_lines(say: Callable[[str], None], progress: ProgressSink | None = None) -> Callable[[], None]:
    """Echo, through `say`, the worker lines Ray forwards to this driver that start with
    `tasks.console.MARKER` (without it); progress lines (rank 0's epochs) go to `progress`
    instead, or nowhere. Returns the function that stops the relay.

    It hooks `ray._private.worker.global_worker_stdstream_dispatcher`, the fan-out Ray's
    driver prints forwarded worker output with: not a public API, so a Ray without it
    only costs the relayed lines (they are in the log file either way)."""
    try:
        from ray._private.worker import global_worker_stdstream_dispatcher as dispatcher  # noqa: PLC2701
    except ImportError:
        return lambda: None

    recent: OrderedDict[tuple, None] = OrderedDict()  # (pid, line) pairs relayed lately

    def relay(batch: dict) -> None:
        for line in batch.get("lines") or ():
            if not line.startswith(MARKER):
                continue
            # Ray forwards a Ray Train worker's line twice (seen: Ray 2.60, the same pid);
            # a worker started again (another pid) may say the same words anew.
            key = (batch.get("pid"), line)
            if key in recent:
                continue
            recent[key] = None
            if len(recent) > 256:
                recent.popitem(last=False)
            said = line[len(MARKER):]
            reported = parse_progress_line(said)
            if reported is None:
                say(said)
            elif progress is not None:
                progress(*reported)

    dispatcher.add_handler(_RELAY, relay)
    return lambda: dispatcher.remove_handler(_RELAY)
