"""Waiting out a store outage (jobs.storage.outage), deterministically: the failures are real
(a connection to a port where no store listens is refused), the waits are simulated
(`support.clock.SimulatedClock` passed as the retry's clock and sleep)."""

from __future__ import annotations

import socket

import pytest

from jobs.storage.outage import (STORE_OUTAGE_VARIABLE, StoreUnavailableError, is_transient,
                                 retry_while_unavailable, store_outage_seconds)
from support.clock import SimulatedClock


@pytest.fixture
def no_store() -> tuple[str, int]:
    """An address where nothing listens (a port bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()


def _connect(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=5):
        return b"data"


def _store_back_at(moment: float, clock: SimulatedClock, address: tuple[str, int]):
    """A read that is refused until the simulated clock reaches `moment`, then answers."""
    calls: list[float] = []

    def read() -> bytes:
        calls.append(clock.elapsed)
        return _connect(address) if clock.elapsed < moment else b"data"

    return read, calls


def _doubling_to_a_ceiling(waits: list[float]) -> bool:
    ceiling = max(waits)
    return waits[0] > 0 and all(later == min(earlier * 2, ceiling) for earlier, later in zip(waits, waits[1:]))


def test_a_refused_connection_is_the_stores_failure(no_store):
    with pytest.raises(OSError) as refused:
        _connect(no_store)
    assert is_transient(refused.value)
    assert not is_transient(FileNotFoundError("Path does not exist 'b/a.jpg'"))


def test_an_outage_is_waited_out_with_doubling_waits_until_the_store_answers(no_store):
    clock = SimulatedClock()
    read, calls = _store_back_at(40.0, clock, no_store)
    assert retry_while_unavailable(read, "reading a.jpg", budget=120, clock=clock, sleep=clock.sleep) == b"data"
    assert _doubling_to_a_ceiling(clock.waits) and clock.waits.count(max(clock.waits)) >= 2, clock.waits
    assert len(calls) == len(clock.waits) + 1  # one read after each wait
    assert calls[-2] < 40.0 <= calls[-1]  # answered by the first read after the store came back


def test_an_outage_past_the_budget_fails_naming_the_wait_and_the_budget(no_store):
    clock = SimulatedClock()
    with pytest.raises(StoreUnavailableError, match=rf"did not answer for \d+ s while reading a.jpg .*; "
                                                    rf"the budget is 30 s \({STORE_OUTAGE_VARIABLE}\)") as failed:
        retry_while_unavailable(lambda: _connect(no_store), "reading a.jpg", budget=30, clock=clock, sleep=clock.sleep)
    assert _doubling_to_a_ceiling(clock.waits), clock.waits
    assert clock.elapsed <= 30 < clock.elapsed + min(clock.waits[-1] * 2, max(clock.waits))  # gave up, not overslept
    assert f"did not answer for {clock.elapsed:.0f} s" in str(failed.value)


def test_the_budget_comes_from_the_environment(no_store, monkeypatch):
    monkeypatch.setenv(STORE_OUTAGE_VARIABLE, "3")
    assert store_outage_seconds() == 3.0
    clock = SimulatedClock()
    with pytest.raises(StoreUnavailableError, match=r"the budget is 3 s"):
        retry_while_unavailable(lambda: _connect(no_store), "reading a.jpg", clock=clock, sleep=clock.sleep)
    assert clock.elapsed <= 3


def test_an_objects_own_failure_fails_at_once_without_waiting(tmp_path):
    clock = SimulatedClock()
    with pytest.raises(FileNotFoundError):
        retry_while_unavailable(lambda: (tmp_path / "missing.jpg").read_bytes(), "reading missing.jpg", budget=60,
                                clock=clock, sleep=clock.sleep)
    assert clock.waits == []


@pytest.mark.parametrize("error, code", [
    # pyarrow words its S3 errors (no code attached); a HEAD answer has no body, only a status
    (OSError("When getting information for key 'a.jpg' in bucket 'b': AWS Error ACCESS_DENIED during "
             "HeadObject operation: No response body."), "AccessDenied"),
    (OSError("When getting information for key 'a' in bucket 'b': AWS Error UNKNOWN (HTTP status 403) during "
             "HeadObject operation: No response body."), "AccessDenied"),
    (OSError("AWS Error INVALID_ACCESS_KEY_ID during ListObjectsV2 operation"), "InvalidAccessKeyId"),
])
def test_a_refusal_worded_by_pyarrow_gets_the_code_and_hint_boto3_would(error, code):
    from jobs.storage.objects import STORAGE_HINTS, describe_storage_error, refusal_code

    assert refusal_code(error) == code and not is_transient(error)
    assert describe_storage_error(error) == f"{code}: {STORAGE_HINTS[code]}"


def test_a_forbidden_head_request_is_access_denied_and_an_outage_is_no_refusal():
    from botocore.exceptions import ClientError

    from jobs.storage.objects import describe_storage_error, refusal_code

    forbidden = ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadBucket")
    assert describe_storage_error(forbidden).startswith("AccessDenied: access denied; check the credentials")
    unavailable = ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "busy"}}, "GetObject")
    assert refusal_code(unavailable) is None and is_transient(unavailable)
    assert refusal_code(OSError("AWS Error NETWORK_CONNECTION during HeadObject operation")) is None
