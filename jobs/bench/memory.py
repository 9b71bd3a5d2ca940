"""Peak memory of all the processes of a job while it runs.

The job's processes are the driver (this process), the node's raylet with everything it
started (workers, actors) and the raylet's object store, which lives in shared memory
mapped by the raylet and the workers. Summing RSS would count shared pages once per
process that maps them; PSS (proportional set size, from /proc/PID/smaps_rollup) splits
each shared page among its mappers, so the sum counts every page once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass  # the process ended between listing and reading
    return 0


def job_processes() -> list[int]:
    """The driver, and this node's raylet with all its descendants."""
    import os

    import psutil

    pids = {os.getpid()}
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "raylet":
            try:
                pids.add(process.pid)
                pids.update(child.pid for child in process.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
    return sorted(pids)


class PeakMemory:
    """Samples the summed PSS of the job's processes every `interval` seconds."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.samples = 0
        self._stop = threading.Event()

    def sample(self) -> int:
        total = sum(_pss_bytes(pid) for pid in job_processes())
        self.peak_bytes = max(self.peak_bytes, total)
        self.samples += 1
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


@contextmanager
def peak_memory(interval: float = 0.25) -> Iterator[PeakMemory]:
    """`with peak_memory() as memory: ...`; then `memory.peak_bytes`."""
    meter = PeakMemory(interval)
    thread = threading.Thread(target=meter._run, name="mediajobs-memory", daemon=True)
    thread.start()
    try:
        yield meter
    finally:
        meter._stop.set()
        thread.join()
        meter.sample()


def wait_for_idle_workers(seconds: float = 3.0) -> None:
    """Give finished actors time to exit, so one run's processes are not counted in the next."""
    time.sleep(seconds)
