"""The output lease on the real S3 store (conditional writes): the shared contract
(support.lease_contract) and expiry by the store's clock, not the hosts'."""

from __future__ import annotations

import time
from typing import Callable

import pytest
from support.lease_contract import TTL, LeaseContract, take_once_expired

from jobs.storage.lease import LockHeldError, acquire_lease


@pytest.fixture(scope="module")
def s3_locks(local_stack) -> str:
    from jobs.storage.checks import ensure_bucket

    ensure_bucket("s3://it-locks/")
    return "s3://it-locks/"


class TestLeaseOnS3(LeaseContract):
    @pytest.fixture
    def place(self, request, s3_locks) -> Callable[[str], str]:
        """A fresh output URI per name, under a prefix of this test's own."""
        unique = f"{request.node.name}-{time.time_ns()}".replace("[", "-").replace("]", "")
        return lambda name: f"{s3_locks}{unique}/{name}/"


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
    taken = take_once_expired(output, "taker")
    assert TTL - 0.05 < time.monotonic() - written < TTL + 3
    assert taken.taken_over
