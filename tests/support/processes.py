"""Processes started together: what several workers of one node do at the same moment."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable


def run_together(target: Callable, args: tuple, count: int, timeout: float = 120) -> list:
    """Start `count` spawned processes running `target(*args, start, results)`, where `start`
    is a barrier they pass together and `results` a queue each puts its one answer on;
    returns the answers (in arrival order) once every process exited cleanly."""
    spawn = multiprocessing.get_context("spawn")
    start, results = spawn.Barrier(count), spawn.Queue()
    processes = [spawn.Process(target=target, args=(*args, start, results)) for _ in range(count)]
    for process in processes:
        process.start()
    found = [results.get(timeout=timeout) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return found
