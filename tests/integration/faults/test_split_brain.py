"""Split brain: run A stalls (SIGSTOP) at each write of its commit phase, its lease expires,
run B takes the output over with its clock 11 minutes ahead and commits; then A wakes up
and its stalled write lands late. A must exit 1 saying it lost the output (or, stalled at
its very last write, the lease release, exit 0: it had finished before B took over), B's
commit stands, nothing is lost or duplicated.

A is tests/support/lifecycle_driver.py (the real lifecycle, no Ray) behind `StoreProxy`, which
holds A's Nth write and stops A; B runs in this process. Stall points run a few at once
(commit_faults.each_point), each with its own proxy and output.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from . import commit_faults as faults
from support import lifecycle_driver
from .commit_faults import NIGHTS
from jobs.storage.lease import LockHeldError
from support.store_proxy import StoreProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
# A's lease lapses for B once the store's clock (whole seconds) shows it older than this: 0-1 s
# after A stopped renewing it (every TTL / 5), at each of some 40 stall points.
TTL = "0.5"
SKEW_SECONDS = 11 * 60


def _renewal(method: str, path: str) -> bool:
    """A lease write (taking or renewing it): the keeper thread's, at no fixed place in a run."""
    return method == "PUT" and path.split("?")[0].endswith("/_lock.json")


def _commit_phase(writes: list[tuple[int, str, str]], staged: str) -> list[tuple[str, str]]:
    """The run's writes after its last staged rows (its commit and finish), lease writes left out."""
    steps = [(method, path) for _, method, path in writes if not _renewal(method, path)]
    last_staged = max(i for i, (method, path) in enumerate(steps)
                      if method in ("PUT", "POST") and staged in path.split("?")[0] and "?delete" not in path)
    return list(enumerate(steps))[last_staged + 1:]


def _commit_points(stack, state: str, staged: str, kind: str, baseline: str, *args: str):
    """A whole run of `kind` into `baseline` (a copy of `state`) through a proxy: its writes, and
    the commit phase's among them (after its last write under `staged`)."""
    with StoreProxy(stack.s3_endpoint) as proxy:
        faults.copy_prefix(state, baseline)
        writes = faults.baseline(proxy, stack, kind, baseline, *args)
    return writes, _commit_phase(writes, staged)


def _hold_at(step: int):
    """A proxy hook holding the run's `step`-th write that is not a lease write (0-based)."""
    seen = []

    def hook(n: int, method: str, path: str) -> str | None:
        if _renewal(method, path):
            return None
        seen.append(n)
        return "hold" if len(seen) == step + 1 else None

    return hook


def _clock_ahead(monkeypatch) -> None:
    """This process's wall clock (B's) 11 minutes ahead, from here to the end of the test;
    A runs in a process of its own, on the real clock."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + SKEW_SECONDS)


def _as_b(run):
    """Run B in this process, once A's lease lapsed."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return run()
        except LockHeldError:
            assert time.monotonic() < deadline, "A's lease never lapsed"
            time.sleep(0.1)


def _stall_a(proxy: StoreProxy, stack, step: int, *args: str):
    proxy.reset()
    proc = faults.driver(proxy, stack, *args)
    proxy.on_hold = lambda: os.killpg(proc.pid, signal.SIGSTOP)
    proxy.on_write = _hold_at(step)
    assert proxy.wait_held(120), proc.communicate(timeout=5)[0][-3000:]
    return proc


def _wake(proxy: StoreProxy, proc) -> tuple[int, str]:
    os.killpg(proc.pid, signal.SIGCONT)
    proxy.release()
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def _check_a(code: int, out: str, held_write: tuple[str, str]) -> None:
    if held_write[0] == "DELETE" and held_write[1].split("?")[0].endswith("/_lock.json"):
        assert code == 0, (held_write, out[-3000:])  # stalled releasing: it had finished
        return
    assert code == 1, (held_write, out[-3000:])
    assert "run fenced out: run " in out and "lost its lease on" in out, (held_write, out[-3000:])
    assert "Traceback" not in out, (held_write, out[-3000:])


def _split_brain(proxy: StoreProxy, stack, write: tuple[str, str], b_run, step: int, *a_args: str):
    """A stalled at its write `step`, B run (`b_run`) once A's lease lapsed, A woken and its
    exit checked; returns B's result."""
    a = _stall_a(proxy, stack, step, *a_args)
    b = _as_b(b_run)
    code, out = _wake(proxy, a)
    _check_a(code, out, write)
    return b


def test_a_plain_run_stalled_in_its_commit_cannot_damage_the_run_that_took_over(bucket, local_stack,
                                                                                 monkeypatch):
    monkeypatch.setenv("MEDIAJOBS_LEASE_TTL_SECONDS", TTL)  # A's (inherited) and B's
    old_output = bucket + "split-old/"
    lifecycle_driver.plain(old_output, 10, "model-old")
    writes, points = _commit_points(local_stack, old_output, "/_staging/", "plain", bucket + "split-baseline/",
                                    "13", "model-a")
    assert len(points) >= 5, writes

    def stalled_then_woken(proxy: StoreProxy, point: tuple[int, tuple[str, str]]) -> None:
        n, write = point
        output = f"{bucket}split-{n:03d}/"
        faults.copy_prefix(old_output, output)
        b_run = _split_brain(proxy, local_stack, write, lambda: lifecycle_driver.plain(output, 12, "model-b"),
                             n, "plain", output, "13", "model-a")
        predictions, errors = faults.table(output, "predictions"), faults.table(output, "errors")
        assert set(predictions.column("run_id").to_pylist()) == {b_run} == set(errors.column("run_id").to_pylist())
        outcomes = Counter(predictions.column("uri").to_pylist() + errors.column("uri").to_pylist())
        assert len(outcomes) == 12 and set(outcomes.values()) == {1}, write
        assert not [u for u in faults.left_behind(output) if u.endswith("/_lock.json")], write

    _clock_ahead(monkeypatch)
    faults.each_point(local_stack, points, stalled_then_woken)


def test_a_nightly_run_stalled_in_its_commit_cannot_damage_the_run_that_took_over(bucket, local_stack,
                                                                                   monkeypatch):
    monkeypatch.setenv("MEDIAJOBS_LEASE_TTL_SECONDS", TTL)
    archive, model = bucket + "split-archive/", faults.model(bucket + "split-run/model/")
    faults.archive(archive, 1)
    first_output = bucket + "split-nightly-first/"
    lifecycle_driver.nightly(first_output, archive, model, NIGHTS[0])
    faults.archive(archive, 2)
    tables = ("predictions", "errors")
    baseline = bucket + "split-nightly-baseline/"
    writes, points = _commit_points(local_stack, first_output, "/scored/", "nightly", baseline, archive, model,
                                    NIGHTS[1])
    second = {name: faults.night_rows(baseline, name, NIGHTS[1]) for name in tables}
    assert len(points) >= 10, writes

    def stalled_then_woken(proxy: StoreProxy, point: tuple[int, tuple[str, str]]) -> None:
        n, write = point
        output = f"{bucket}split-nightly-{n:03d}/"
        faults.copy_prefix(first_output, output)
        _split_brain(proxy, local_stack, write, lambda: lifecycle_driver.nightly(output, archive, model, NIGHTS[1]),
                     n, "nightly", output, archive, model, NIGHTS[1])
        assert {name: faults.night_rows(output, name, NIGHTS[1]) for name in tables} == second, write
        rows = [r for name in tables for r in faults.table(output, name).to_pylist()]
        versions = Counter((r["uri"], r["etag"], r["model_id"]) for r in rows)
        assert set(versions.values()) == {1}, write
        assert not [u for u in faults.left_behind(output) if u.endswith("/_lock.json")], write

    _clock_ahead(monkeypatch)
    faults.each_point(local_stack, points, stalled_then_woken)


def test_two_nightly_runs_of_different_dates_started_together(bucket, local_stack):
    """Both start at once; whichever takes the lease first is held at its first table commit
    until the other has ended: the other is refused (exit 3) and the first commits."""
    archive, model = bucket + "together-archive/", faults.model(bucket + "together-run/model/")
    faults.archive(archive, 1)
    output = bucket + "together/"
    with StoreProxy(local_stack.s3_endpoint) as proxy:
        proxy.on_write = lambda n, method, path: "hold" if "/_delta_log/" in path else None
        runs = [faults.driver(proxy, local_stack, "nightly", output, archive, model, night) for night in NIGHTS]
        assert proxy.wait_held(120), [r.communicate(timeout=5)[0][-2000:] for r in runs]
        refused, deadline = None, time.monotonic() + 120
        while refused is None and time.monotonic() < deadline:
            refused = next((r for r in runs if r.poll() is not None), None)
            time.sleep(0.1)
        assert refused is not None
        out = refused.communicate(timeout=10)[0]
        assert refused.returncode == 3 and "run refused: another run" in out, out[-3000:]
        proxy.release()
        winner = next(r for r in runs if r is not refused)
        out = winner.communicate(timeout=120)[0]
        assert winner.returncode == 0, out[-3000:]
    committed = {night for night in NIGHTS if faults.night_rows(output, "predictions", night)}
    assert len(committed) == 1
