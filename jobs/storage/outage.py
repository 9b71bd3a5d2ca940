"""Waiting out an object store that stopped answering, and saying so when it does not come back.

A store that restarts, is overloaded or is cut off for a while is not a bad object: reads
wait it out (bounded doubling waits, `retry_while_unavailable`), and a job whose store
stays away past the budget fails with one line naming the outage (`store_outage`)
instead of turning objects into error rows or leaving half a result.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from jobs.errors import StorageError, root_cause
from jobs.storage.objects import describe_storage_error

# How long reads wait out an object store that does not answer (restarting, overloaded,
# network down) before the job fails; MEDIAJOBS_STORE_OUTAGE_SECONDS changes it, and
# the driver passes it on to its workers.
STORE_OUTAGE_VARIABLE = "MEDIAJOBS_STORE_OUTAGE_SECONDS"
DEFAULT_STORE_OUTAGE_SECONDS = 120.0
_BACKOFF_SECONDS = (0.5, 8.0)  # first wait, longest wait (doubling in between)
# Failures of the store rather than of an object: worth waiting out. Missing objects,
# denied access and bad keys are not; they fail at once.
_TRANSIENT_MARKERS = ("NETWORK_CONNECTION", "SLOW_DOWN", "SERVICE_UNAVAILABLE", "INTERNAL_FAILURE",
                      "HTTP status 5", "Could not connect", "Couldn't connect", "Connection refused",
                      "connection refused", "Connection reset", "Connect timeout", "timed out",
                      "EndpointConnectionError", "SlowDown", "ServiceUnavailable", "InternalError")


class StoreUnavailableError(StorageError):
    """The object store did not answer within the outage budget."""

    headline = "object store unavailable"


def is_transient(exc: BaseException) -> bool:
    """Whether a storage failure is the store's (retry) rather than the object's (don't)."""
    text = f"{type(exc).__name__}: {exc}"
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        text += " " + str(response.get("Error", {}).get("Code", ""))
    return any(marker in text for marker in _TRANSIENT_MARKERS)


def store_outage_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(STORE_OUTAGE_VARIABLE, DEFAULT_STORE_OUTAGE_SECONDS)))
    except ValueError:
        return DEFAULT_STORE_OUTAGE_SECONDS


def retry_while_unavailable(call, what: str, budget: float | None = None, *,
                            clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None):
    """`call()`, retried with doubling waits while the store fails transiently.

    `clock` and `sleep` (default: time.monotonic, time.sleep) measure and spend the waits;
    tests pass a simulated pair to follow the schedule without waiting it out.

    Raises:
        StoreUnavailableError: the store still failed after `budget` seconds (default:
            `store_outage_seconds()`).
        whatever `call` raises for a non-transient failure, at once.
    """
    import time

    clock, sleep = clock or time.monotonic, sleep or time.sleep
    budget = store_outage_seconds() if budget is None else budget
    began, wait = clock(), _BACKOFF_SECONDS[0]
    while True:
        try:
            return call()
        except Exception as exc:  # pyarrow's OSError, boto3's EndpointConnectionError, ours
            if not is_transient(exc):
                raise
            waited = clock() - began
            if waited + wait > budget:
                raise StoreUnavailableError(
                    f"the object store did not answer for {waited:.0f} s while {what} ({describe_storage_error(exc)}); "
                    f"the budget is {budget:.0f} s ({STORE_OUTAGE_VARIABLE})") from None
            sleep(wait)
            wait = min(wait * 2, _BACKOFF_SECONDS[1])


def store_outage(exc: BaseException) -> str | None:
    """What went wrong, when a run failed because the object store stopped answering.

    The outage may surface wrapped by Ray: as the cause of a task error, or only as text
    (an actor that died in its constructor carries its traceback in its message).
    """
    seen: BaseException | None = exc
    while seen is not None:
        if found := re.search(r"StoreUnavailableError: ([^\n]+)", str(seen)):
            return found[1]
        if isinstance(seen, StoreUnavailableError) or (isinstance(seen, OSError) and is_transient(seen)):
            return root_cause(seen)
        seen = seen.__cause__
    return None
