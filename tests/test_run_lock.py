"""The output lease: one run at a time, expiry by the store's clock and takeover, renewal
(also after a lost answer), conditional release, the TTL setting; on a local folder and on
the real S3 store (conditional writes)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest

from jobs.errors import JobFailedError, MediaJobsError
from jobs.storage.lease import (LeaseKeeper, LockHeldError, acquire_lease, lease_is_held, release_lease,
                             renew_lease)

TTL = 2  # seconds; S3 times have a resolution of one second, so expiry takes 2-3 s there


@pytest.fixture(scope="module")
def s3_locks(local_stack) -> str:
    from jobs.storage.objects import ensure_bucket

    ensure_bucket("s3://it-locks/")
    return "s3://it-locks/"


@pytest.fixture(params=["folder", pytest.param("s3", marks=pytest.mark.integration)])
def place(request, tmp_path) -> Callable[[str], str]:
    """Where outputs go: a fresh output URI per name, on a local folder or on S3."""
    if request.param == "folder":
        return lambda name: str(tmp_path / name) + "/"
    root = request.getfixturevalue("s3_locks")
    unique = f"{request.node.name}-{time.time_ns()}".replace("[", "-").replace("]", "")
    return lambda name: f"{root}{unique}/{name}/"


def _take_once_expired(output: str, run_id: str, deadline: float = 6.0):
    """Poll until `run_id` takes the lease (the holder's expired by the store's clock)."""
    started = time.monotonic()
    while True:
        try:
            return acquire_lease(output, run_id, ttl_seconds=TTL)
        except LockHeldError:
            if time.monotonic() - started > deadline:
                raise
            time.sleep(0.1)


def test_lease_protocol(place):
    output = place("nightly")
    first = acquire_lease(output, "run-a", ttl_seconds=TTL)
    with pytest.raises(LockHeldError, match=r"another run \(run-a on .*\) is writing to .* until"):
        acquire_lease(output, "run-b", ttl_seconds=TTL)
    again = acquire_lease(output, "run-a", ttl_seconds=TTL)  # the same run re-entering
    assert not first.taken_over and not again.taken_over
    with pytest.raises(LockHeldError, match="run run-a lost its lease"):
        renew_lease(first)  # `again` rewrote the lock: the older version is stale
    time.sleep(1.2)
    renewed_at = time.monotonic()
    renewed = renew_lease(again)
    time.sleep(1.0)  # past the first write's TTL, within the renewed one
    with pytest.raises(LockHeldError):
        acquire_lease(output, "run-b", ttl_seconds=TTL)
    taken = _take_once_expired(output, "run-b")  # run-a died: its lease expired
    assert time.monotonic() - renewed_at > TTL - 0.05  # not before its TTL, by the store's clock
    assert taken.taken_over
    with pytest.raises(LockHeldError, match="run run-a lost its lease"):
        renew_lease(renewed)
    release_lease(renewed)  # not ours any more: left alone
    with pytest.raises(LockHeldError, match="run-b"):
        acquire_lease(output, "run-c", ttl_seconds=TTL)
    release_lease(taken)
    assert not acquire_lease(output, "run-c", ttl_seconds=TTL).taken_over  # released: nothing taken over


@pytest.mark.integration
@pytest.mark.parametrize("holder_skew, taker_skew", [(+660, -660), (-660, +660)],
                         ids=["holder-ahead", "taker-ahead"])
def test_expiry_follows_the_store_clock_not_the_hosts(s3_locks, monkeypatch, holder_skew, taker_skew):
    # Host clocks 11 minutes off either way: the holder neither keeps the lease for 22
    # minutes (holder ahead) nor loses it at once (taker ahead).
    real_time = time.time
    output = f"{s3_locks}skew/{holder_skew}-{time.time_ns()}/"
    written = time.monotonic()
    monkeypatch.setattr(time, "time", lambda: real_time() + holder_skew)
    acquire_lease(output, "holder", ttl_seconds=TTL)
    monkeypatch.setattr(time, "time", lambda: real_time() + taker_skew)
    with pytest.raises(LockHeldError, match=r"another run \(holder on "):
        acquire_lease(output, "taker", ttl_seconds=TTL)  # fresh on the server
    taken = _take_once_expired(output, "taker")
    assert TTL - 0.05 < time.monotonic() - written < TTL + 3
    assert taken.taken_over


def _take_at_once(output: str, start: threading.Barrier, run_id: str):
    start.wait()
    try:
        return acquire_lease(output, run_id, ttl_seconds=60)
    except LockHeldError as exc:
        return exc


def _race(outputs: list[str], takers: int = 8, at_once: int = 25) -> None:
    """`takers` threads, each its own run, take each output's lease at once: one wins. The
    store serialises conditional writes per key (a waiting PUT can take a second or more),
    so `at_once` outputs are raced side by side."""
    run_ids = [f"run-{i}" for i in range(takers)]
    with ThreadPoolExecutor(takers * at_once) as pool:
        for first in range(0, len(outputs), at_once):
            batch = outputs[first:first + at_once]
            races = {output: [pool.submit(_take_at_once, output, start, run_id) for run_id in run_ids]
                     for output, start in ((o, threading.Barrier(takers, timeout=60)) for o in batch)}
            for output, futures in races.items():
                outcomes = [future.result() for future in futures]
                winners = [o for o in outcomes if not isinstance(o, Exception)]
                assert len(winners) == 1, (output, outcomes)
                assert all(isinstance(o, LockHeldError) for o in outcomes if o is not winners[0]), outcomes
                assert lease_is_held(winners[0]) and not winners[0].taken_over


def test_one_winner_among_concurrent_takers(place):
    _race([place(f"race-{trial}") for trial in range(100)])


def test_a_renewal_whose_answer_was_lost_is_recognised_by_its_nonce(place):
    output = place("renewal")
    lease = acquire_lease(output, "run-a", ttl_seconds=60)
    landed = renew_lease(lease, nonce="0123456789abcdef")  # the write landed; its answer was lost
    retried = renew_lease(lease, nonce="0123456789abcdef")  # the retry fails its If-Match: ours all the same
    assert retried.etag == landed.etag and lease_is_held(retried)
    with pytest.raises(LockHeldError, match="run run-a lost its lease"):
        renew_lease(lease, nonce="fedcba9876543210")  # another write's nonce: not ours
    release_lease(retried)
    other = acquire_lease(output, "run-b", ttl_seconds=60)
    with pytest.raises(LockHeldError, match="run run-a lost its lease"):
        renew_lease(retried, nonce="0123456789abcdef")  # the lock is another run's now
    assert lease_is_held(other) and not lease_is_held(retried)


def test_release_leaves_a_newer_holders_lock_alone(place):
    output = place("release")
    stale = acquire_lease(output, "run-a", ttl_seconds=60)
    newer = acquire_lease(output, "run-a", ttl_seconds=60)  # e.g. a retried run re-entering
    release_lease(stale)
    assert lease_is_held(newer) and not lease_is_held(stale)
    with pytest.raises(LockHeldError, match=r"another run \(run-a on "):
        acquire_lease(output, "run-b", ttl_seconds=60)
    release_lease(newer)
    assert not lease_is_held(newer)
    acquire_lease(output, "run-b", ttl_seconds=60)


def test_a_release_racing_a_new_write_never_removes_it(place):
    # A release that read "ours" and then deleted would remove a lock written in between;
    # the conditional delete (a rename on a folder) cannot.
    def release(lease, start: threading.Barrier) -> None:
        start.wait()
        release_lease(lease)

    trials = 40 if place("release-race").startswith("s3://") else 1000  # a folder's window is microseconds wide
    with ThreadPoolExecutor(2) as pool:
        for trial in range(trials):
            output = place(f"release-race-{trial}")
            old = acquire_lease(output, "run-a", ttl_seconds=60)
            start = threading.Barrier(2, timeout=30)
            released = pool.submit(release, old, start)
            new = pool.submit(_take_at_once, output, start, "run-a").result()  # the same run re-entering
            released.result()
            if not isinstance(new, Exception):  # else the release came first: the re-entry lost its race
                assert lease_is_held(new), trial


def _remove_by_hand(lock_uri: str) -> None:
    from jobs.storage.objects import parse_uri, s3_client

    lock = parse_uri(lock_uri)
    if lock.scheme == "s3":
        s3_client().delete_object(Bucket=lock.bucket, Key=lock.key)
    else:
        with contextlib.suppress(FileNotFoundError):  # a renewal may have it moved aside this instant
            os.unlink(lock.key)


def test_lease_keeper_renews_and_notices_a_lost_lease(place, monkeypatch):
    monkeypatch.setenv("MEDIAJOBS_LEASE_TTL_SECONDS", "0.5")
    output = place("keeper")
    keeper = LeaseKeeper(output, "run-a")
    first = keeper.lease
    assert keeper.ttl_seconds == 0.5 and first.ttl_seconds == 0.5 and not first.taken_over
    time.sleep(0.45)  # renewed every 0.1 s
    assert keeper.lease.etag != first.etag and keeper.held()
    keeper.check()
    for _ in range(5):  # pulled from under it (between two renewals); another run takes the output
        _remove_by_hand(keeper.lease.uri)
        with contextlib.suppress(LockHeldError):
            other = acquire_lease(output, "run-b", ttl_seconds=60)
            break
    else:
        pytest.fail("run-b never got the lease")
    assert not keeper.held()
    time.sleep(0.3)
    with pytest.raises(JobFailedError, match="run run-a lost its lease .*; nothing was committed"):
        keeper.check()
    keeper.release()
    assert lease_is_held(other)  # a keeper that lost the lease leaves the new holder's lock


def test_ttl_from_the_environment(tmp_path, monkeypatch):
    output = str(tmp_path / "out") + "/"
    monkeypatch.setenv("MEDIAJOBS_LEASE_TTL_SECONDS", "90")
    lease = acquire_lease(output, "run-a")
    assert lease.ttl_seconds == 90
    assert json.loads((tmp_path / "out" / "_lock.json").read_text())["ttl_seconds"] == 90
    assert renew_lease(lease).ttl_seconds == 90
    assert acquire_lease(output, "run-a", ttl_seconds=30).ttl_seconds == 30  # an explicit TTL wins
    for bad in ("0", "-5", "soon", "nan", "inf"):
        monkeypatch.setenv("MEDIAJOBS_LEASE_TTL_SECONDS", bad)
        with pytest.raises(MediaJobsError, match=f"MEDIAJOBS_LEASE_TTL_SECONDS must be a positive number of "
                                                 f"seconds, not '{bad}'"):
            acquire_lease(output, "run-a")
        with pytest.raises(MediaJobsError, match="MEDIAJOBS_LEASE_TTL_SECONDS"):
            LeaseKeeper(output, "run-a")
    monkeypatch.delenv("MEDIAJOBS_LEASE_TTL_SECONDS")
    assert acquire_lease(output, "run-a").ttl_seconds == 15 * 60


def test_a_dead_holder_on_this_host_does_not_block_the_next_run(tmp_path):
    import subprocess
    import sys

    output = str(tmp_path / "out") + "/"
    acquire_lease(output, "run-a", ttl_seconds=3600)
    with pytest.raises(LockHeldError):
        acquire_lease(output, "run-b", ttl_seconds=3600)  # the holder (this process) is alive
    lock = tmp_path / "out" / "_lock.json"
    record = json.loads(lock.read_text())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record["owner"] = record["owner"].rsplit(":", 1)[0] + ":" + gone.stdout.strip()  # a process that has exited
    lock.write_text(json.dumps(record))
    taken = acquire_lease(output, "run-b", ttl_seconds=3600)
    assert taken.run_id == "run-b" and taken.taken_over
