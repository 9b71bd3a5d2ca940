"""The output lease's contract (jobs.storage.lease), run on each kind of output: a local
folder (tests/unit/test_run_lock.py) and the real S3 store (tests/integration/test_run_lock.py).
A subclass provides `place(name) -> output URI`."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jobs.errors import JobFailedError
from jobs.storage.lease import LeaseKeeper, LockHeldError, acquire_lease, lease_is_held, release_lease, renew_lease

TTL = 2  # seconds; S3 times have a resolution of one second, so expiry takes 2-3 s there


def take_once_expired(output: str, run_id: str, deadline: float = 6.0):
    """Poll until `run_id` takes the lease (the holder's expired by the store's clock)."""
    started = time.monotonic()
    while True:
        try:
            return acquire_lease(output, run_id, ttl_seconds=TTL)
        except LockHeldError:
            if time.monotonic() - started > deadline:
                raise
            time.sleep(0.1)


def take_at_once(output: str, start: threading.Barrier, run_id: str):
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
            races = {output: [pool.submit(take_at_once, output, start, run_id) for run_id in run_ids]
                     for output, start in ((o, threading.Barrier(takers, timeout=60)) for o in batch)}
            for output, futures in races.items():
                outcomes = [future.result() for future in futures]
                winners = [o for o in outcomes if not isinstance(o, Exception)]
                assert len(winners) == 1, (output, outcomes)
                assert all(isinstance(o, LockHeldError) for o in outcomes if o is not winners[0]), outcomes
                assert lease_is_held(winners[0]) and not winners[0].taken_over


def _remove_by_hand(lock_uri: str) -> None:
    from jobs.storage.objects import parse_uri, s3_client

    lock = parse_uri(lock_uri)
    if lock.scheme == "s3":
        s3_client().delete_object(Bucket=lock.bucket, Key=lock.key)
    else:
        with contextlib.suppress(FileNotFoundError):  # a renewal may have it moved aside this instant
            os.unlink(lock.key)


class LeaseContract:
    """One run at a time, expiry by the store's clock and takeover, renewal (also after a
    lost answer), conditional release. Subclasses define the `place` fixture."""

    def test_lease_protocol(self, place):
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
        taken = take_once_expired(output, "run-b")  # run-a died: its lease expired
        assert time.monotonic() - renewed_at > TTL - 0.05  # not before its TTL, by the store's clock
        assert taken.taken_over
        with pytest.raises(LockHeldError, match="run run-a lost its lease"):
            renew_lease(renewed)
        release_lease(renewed)  # not ours any more: left alone
        with pytest.raises(LockHeldError, match="run-b"):
            acquire_lease(output, "run-c", ttl_seconds=TTL)
        release_lease(taken)
        assert not acquire_lease(output, "run-c", ttl_seconds=TTL).taken_over  # released: nothing taken over

    def test_one_winner_among_concurrent_takers(self, place):
        _race([place(f"race-{trial}") for trial in range(100)])

    def test_a_renewal_whose_answer_was_lost_is_recognised_by_its_nonce(self, place):
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

    def test_release_leaves_a_newer_holders_lock_alone(self, place):
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

    def test_a_release_racing_a_new_write_never_removes_it(self, place):
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
                new = pool.submit(take_at_once, output, start, "run-a").result()  # the same run re-entering
                released.result()
                if not isinstance(new, Exception):  # else the release came first: the re-entry lost its race
                    assert lease_is_held(new), trial

    def test_lease_keeper_renews_and_notices_a_lost_lease(self, place, monkeypatch):
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
