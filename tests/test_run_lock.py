"""The output lease: one run at a time, expiry and takeover, renewal, release; on a local
folder and on the real S3 store (conditional writes)."""

from __future__ import annotations

import pytest

from jobs.run_lock import LockHeldError, acquire_lease, release_lease, renew_lease


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


def _lease_protocol(output: str) -> None:
    clock = Clock()
    first = acquire_lease(output, "run-a", ttl_seconds=60, now=clock)
    with pytest.raises(LockHeldError, match=r"another run \(run-a on .*\) is writing to .* until"):
        acquire_lease(output, "run-b", ttl_seconds=60, now=clock)
    again = acquire_lease(output, "run-a", ttl_seconds=60, now=clock)  # the same run re-entering
    with pytest.raises(LockHeldError, match="run run-a lost its lease"):
        renew_lease(first, now=clock)  # `again` rewrote the lock: the older version is stale
    clock.t += 30
    renewed = renew_lease(again, ttl_seconds=60, now=clock)
    clock.t += 45  # past the first expiry, within the renewed one
    with pytest.raises(LockHeldError):
        acquire_lease(output, "run-b", ttl_seconds=60, now=clock)
    clock.t += 60  # run-a died: its lease expired
    taken = acquire_lease(output, "run-b", ttl_seconds=60, now=clock)
    with pytest.raises(LockHeldError, match="run run-a lost its lease"):
        renew_lease(renewed, now=clock)
    release_lease(renewed)  # not ours any more: left alone
    with pytest.raises(LockHeldError, match="run-b"):
        acquire_lease(output, "run-c", ttl_seconds=60, now=clock)
    release_lease(taken)
    acquire_lease(output, "run-c", ttl_seconds=60, now=clock)


def test_lease_on_a_local_folder(tmp_path):
    _lease_protocol(str(tmp_path / "out") + "/")


@pytest.mark.integration
def test_lease_on_s3_with_conditional_writes(local_stack):
    from jobs.storage import ensure_bucket

    ensure_bucket("s3://it-locks/")
    _lease_protocol("s3://it-locks/nightly/")


def test_a_dead_holder_on_this_host_does_not_block_the_next_run(tmp_path):
    import json
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
    assert acquire_lease(output, "run-b", ttl_seconds=3600).run_id == "run-b"
