"""The output lease on a local folder: the shared contract (support.lease_contract), the TTL
setting, a dead holder on this host. On the real S3 store: tests/integration/test_run_lock.py."""

from __future__ import annotations

import json
from typing import Callable

import pytest
from support.lease_contract import LeaseContract

from jobs.errors import MediaJobsError
from jobs.storage.lease import DEFAULT_TTL_SECONDS, LeaseKeeper, LockHeldError, acquire_lease, renew_lease


class TestLeaseOnAFolder(LeaseContract):
    @pytest.fixture
    def place(self, tmp_path) -> Callable[[str], str]:
        """A fresh output folder per name."""
        return lambda name: str(tmp_path / name) + "/"


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
    assert acquire_lease(output, "run-a").ttl_seconds == DEFAULT_TTL_SECONDS  # the documented default


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
