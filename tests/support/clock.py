"""A simulated monotonic clock for retry logic that takes `clock` and `sleep` callables
(jobs.storage.outage.retry_while_unavailable): waits advance it at once and are recorded."""

from __future__ import annotations


class SimulatedClock:
    """`clock()` reads the time; `clock.sleep(s)` records a wait of `s` and advances by it."""

    def __init__(self, start: float = 1000.0):
        self.start = self.now = start
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    @property
    def elapsed(self) -> float:
        return self.now - self.start
