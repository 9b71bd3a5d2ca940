"""Whole-object GETs for the fetch stage, through obstore (Rust's `object_store`).

Measured on 2026-12-07 on this 2-core machine, 3,000 bench JPEGs from the local SeaweedFS,
16 threads (docs/performance.md "Library trials"): obstore made 2.1x the GETs per second
of pyarrow's S3FileSystem, at 0.40x its client CPU and 0.57x the server's CPU per object
(pyarrow asks the store more per object than the GET). Fetching is what bounds image
scoring here, so every scoring, training and nightly fetch of a whole object goes this way;
listings, writes and streamed copies stay with pyarrow and boto3.

Failures come back as the OSErrors the rest of `jobs.storage` reads (pyarrow's wording):
a missing object as FileNotFoundError, a refusal with its S3 code, and a store that does not
answer (refused connection, timeout, 5xx) with pyarrow's NETWORK_CONNECTION marker, so that
`retry_while_unavailable` waits it out. obstore's own retries are off for that reason: the
outage budget (`MEDIAJOBS_STORE_OUTAGE_SECONDS`) is ours to spend, not the client's.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Any

from jobs.storage.settings import resolve_s3_settings, settings_fingerprint

# A store that does not answer, as obstore words it (reqwest and hyper's errors, HTTP 5xx).
_UNAVAILABLE = re.compile(r"error sending request|connect|timed out|timeout|reset|closed|broken pipe|"
                          r"status code: 5\d\d|\b50[0-4]\b", re.IGNORECASE)
# S3's refusal codes as obstore passes them on, to pyarrow's names (jobs.storage.objects).
_REFUSALS = {"InvalidAccessKeyId": "INVALID_ACCESS_KEY_ID", "SignatureDoesNotMatch": "SIGNATURE_DOES_NOT_MATCH",
             "AccessDenied": "ACCESS_DENIED"}


class UnaddressableKeyError(Exception):
    """A key obstore's paths cannot hold (a control character, a "." or ".." segment), which S3
    allows: the caller reads it another way."""


def get_whole(bucket: str, key: str) -> bytearray:
    """The whole object `key` of `bucket` (S3, with the resolved endpoint and credentials).

    Raises:
        UnaddressableKeyError: obstore cannot name the key (nothing was asked of the store);
        FileNotFoundError: no such object; PermissionError: a refusal (its S3 code in the
            text); OSError: anything else, marked NETWORK_CONNECTION when the store did not answer.
    """
    from obstore import get
    from obstore.exceptions import BaseError, NotFoundError, PermissionDeniedError, UnauthenticatedError

    store = _store(bucket, settings_fingerprint(resolve_s3_settings()))
    try:
        return bytearray(get(store, key).bytes())
    except ValueError as exc:  # "Could not parse path": raised before any request
        raise UnaddressableKeyError(str(exc)) from None
    except (NotFoundError, FileNotFoundError):  # obstore raises the builtin for a 404
        raise FileNotFoundError(f"Path does not exist '{bucket}/{key}'") from None
    except (PermissionDeniedError, UnauthenticatedError, PermissionError) as exc:
        text = str(exc)
        code = next((ours for theirs, ours in _REFUSALS.items() if theirs in text), "ACCESS_DENIED")
        raise PermissionError(f"AWS Error {code} during GetObject operation: {_first_line(text)}") from None
    except (BaseError, OSError) as exc:  # obstore raises some failures as builtins (a timeout)
        text = f"{type(exc).__name__}: {exc}"
        if _UNAVAILABLE.search(text):
            raise OSError(f"AWS Error NETWORK_CONNECTION during GetObject operation: {_first_line(text)}") from None
        raise OSError(f"GetObject of {bucket}/{key} failed: {_first_line(text)}") from None


@lru_cache(maxsize=32)
def _store(bucket: str, fingerprint: tuple) -> Any:
    """One client per bucket and settings in each process: its connection pool is reused."""
    from obstore.store import S3Store

    endpoint, access_key, secret_key, region = fingerprint
    config: Any = {"region": region}  # obstore's S3Config (a TypedDict)
    if access_key and secret_key:
        import os

        config.update(access_key_id=access_key, secret_access_key=secret_key)
        if token := os.environ.get("AWS_SESSION_TOKEN"):
            config["session_token"] = token
    client: Any = {"connect_timeout": "10s", "timeout": "120s"}  # its ClientConfig
    if endpoint:
        config["endpoint"] = endpoint
        client["allow_http"] = endpoint.startswith("http://")
    return S3Store(bucket, config=config, client_options=client,
                   retry_config={"max_retries": 0, "retry_timeout": timedelta(0)})


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no detail"
