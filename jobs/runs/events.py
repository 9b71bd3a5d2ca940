"""A run's events as data: `runs/<run_id>/events.jsonl`, one JSON object per phase change.

    {"run_id": "...", "phase": "started", "at": "2026-12-07T07:30:01.250Z", "seconds": 0.0, "counts": {...}}

Phases, in order: `started` (the run holds the output), `scoring` (listed: `objects`; a
generate job's `generating`, a stylize job's `stylizing`), `committing`, `committed`
(`versions`: each table's Delta version), then `finished` (`summary`: the summary's URI) or
`failed` (`error`: its first line); `fenced` when another run took the output over (also
after `finished`, when that happened before the run let go of the output). A scheduler or
log pipeline follows a run by reading the file, without parsing the console.

An object store cannot append, so the file is written whole, at the phases that matter to
someone following the run: when its long part (scoring) begins, and when it ends; the
phases between are kept and written with the next. A run refused before its work began
(a model that does not load, a bad style image) writes no events at all: nothing under
the output says it ran. A lost write is not worth a failed run: the events are a record,
the tables and summary are the result.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

from jobs.storage.objects import write_bytes

log = logging.getLogger(__name__)

EVENTS = "events.jsonl"
WRITE_SECONDS = 5.0
WORK_BEGINS = frozenset({"scoring", "generating", "stylizing"})
ENDS = frozenset({"finished", "failed", "fenced"})


@dataclass
class RunEvents:
    uri: str  # runs/<run_id>/events.jsonl under the output
    run_id: str
    started: float
    lines: list[str] = field(default_factory=list)
    _writing: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _landed: int = 0  # lines in the file as last written
    begun: bool = False  # the run's work began: from here its end is written too

    def add(self, phase: str, **counts) -> None:
        """Record `phase` (with its counts); written now when the work begins, and at the end of
        a run whose work began (a finished run always)."""
        now = time.time()
        millis = int(now * 1000) % 1000
        self.lines.append(json.dumps({
            "run_id": self.run_id, "phase": phase,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{millis:03d}Z",
            "seconds": round(now - self.started, 3), "counts": counts}, sort_keys=False))
        if phase in WORK_BEGINS:
            self.begun = True
        if phase in WORK_BEGINS or (phase in ENDS and (self.begun or self._landed or phase == "finished")):
            self.write()

    def write(self) -> None:
        """Write the file, waiting at most WRITE_SECONDS: a run failing because its store is away
        must not wait out the client's retries once more for its events."""
        count, body = len(self.lines), ("\n".join(self.lines) + "\n").encode()

        def put() -> None:
            with self._writing:  # one write at a time, and never an older file over a newer one
                if count <= self._landed:
                    return
                try:
                    write_bytes(self.uri, body)
                    self._landed = count
                except Exception as exc:  # noqa: BLE001 - the store is away or refuses: the run's own error says so
                    log.debug("events of run %s not written: %s", self.run_id, exc)

        writer = threading.Thread(target=put, name="run-events", daemon=True)
        writer.start()
        writer.join(WRITE_SECONDS)
