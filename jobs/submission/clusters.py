"""Talking to a Ray cluster's Jobs API: which cluster, which token, and errors a user can act on.

Address order: the `--address` given, then `RAY_API_SERVER_ADDRESS`, then `RAY_ADDRESS`,
then the local stack's dashboard when it is up. Ray's own client lets those variables
override an explicit address; ours does not (an explicit `--address` wins), so the client
is built with them hidden.

Token order (Ray 2.60 clusters use token authentication by default): `RAY_AUTH_TOKEN`,
then the file `RAY_AUTH_TOKEN_PATH`, then, for the local stack's own head, its token file,
else `~/.ray/auth_token` (where `ray get-auth-token --generate` writes it). The token is sent as
`Authorization: Bearer ...` and is never printed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cluster.localstate import ray_auth_token_file, read_local_stack
from jobs.errors import MediaJobsError

__all__ = ["ClusterError", "ClusterAuthError", "ClusterTarget", "resolve_target", "jobs_client"]

_ADDRESS_VARIABLES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")


class ClusterError(MediaJobsError):
    """The Ray cluster cannot be reached, or refused a request."""

    headline = "cluster error"


class ClusterAuthError(ClusterError):
    """The cluster's Jobs API refused the request's token (HTTP 401/403)."""

    headline = "cluster authentication failed"


@dataclass(frozen=True)
class ClusterTarget:
    """The Jobs API to talk to: `address` is its http(s) URL; `token_source` says where the
    token came from (for messages; never the token itself)."""

    address: str
    token: str | None
    token_source: str

    def __repr__(self) -> str:  # the token stays out of tracebacks and logs
        return f"ClusterTarget(address={self.address!r}, token_source={self.token_source!r})"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def _api_url(address: str) -> str:
    """The Jobs API URL for an address: `http(s)://host:port` as is; a cluster (GCS) address
    `host:port`, as `ray.init` takes it, is looked up in the cluster as `ray job` does."""
    address = address.strip().rstrip("/")
    if address.startswith(("http://", "https://")):
        return address
    if "://" in address:
        raise ClusterError(f"--address: {address!r} is not a Jobs API address; use the dashboard's URL, "
                           "e.g. http://127.0.0.1:8265 (ray:// client addresses are not supported)")
    stack = read_local_stack()
    if stack is not None and address == stack.ray_address:
        return stack.dashboard_url.rstrip("/")
    from ray.dashboard.utils import ray_address_to_api_server_url

    try:
        return ray_address_to_api_server_url(address).rstrip("/")
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, ValueError, RPC errors
        raise ClusterError(f"cannot find the Jobs API of the Ray cluster at {address} ({type(exc).__name__}); "
                           "pass the dashboard's URL instead, e.g. --address http://HEAD:8265") from None


def _read_token(path: Path) -> str | None:
    try:
        token = path.expanduser().read_text().strip()
    except OSError:
        return None
    return token or None


def _find_token(address: str) -> tuple[str | None, str]:
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
        return _read_token(path), f"RAY_AUTH_TOKEN_PATH ({path})"
    stack = read_local_stack()
    if stack is not None and stack.dashboard_url.rstrip("/") == address:
        # The local stack's head has a token of its own, whatever ~/.ray holds.
        return _read_token(ray_auth_token_file()), "the local stack's token"
    token = _read_token(DEFAULT_TOKEN_FILE)
    if token:
        return token, str(DEFAULT_TOKEN_FILE)
    return None, "none found"


def resolve_target(address: str | None = None) -> ClusterTarget:
    """The cluster a Jobs API command talks to, and its token.

    Raises:
        ClusterError: no address given, none in the environment and no local stack.
    """
    given = address or next((os.environ[name] for name in _ADDRESS_VARIABLES if os.environ.get(name)), None)
    if not given:
        stack = read_local_stack()
        if stack is None:
            raise ClusterError("no Ray cluster given: pass --address http://HEAD:8265, set RAY_ADDRESS, "
                               "or start the local stack with `mediajobs local up`")
        given = stack.dashboard_url
    url = _api_url(given)
    token, source = _find_token(url)
    return ClusterTarget(url, token, source)


@contextlib.contextmanager
def _hidden(names: tuple[str, ...]) -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def auth_hint(target: ClusterTarget) -> str:
    """What to do when the cluster refuses the token."""
    found = "no token was found" if target.token is None else f"the token from {target.token_source} was refused"
    return (f"the Ray cluster at {target.address} requires token authentication and {found}. Set RAY_AUTH_TOKEN "
            "to the cluster's token (on the head: `ray get-auth-token`), or RAY_AUTH_TOKEN_PATH to a file "
            "holding it, or put it in ~/.ray/auth_token")


@contextlib.contextmanager
def translated_errors(target: ClusterTarget) -> Iterator[None]:
    """Turn the Jobs API's exceptions into `ClusterError`s that say what to do."""
    try:
        yield
    except MediaJobsError:
        raise
    except ConnectionError as exc:  # the SDK raises the builtin for a refused connection
        raise ClusterError(f"cannot reach the Ray Jobs API at {target.address} ({exc}); check --address "
                           "(the head's dashboard port, 8265 by default) and that the cluster is up") from None
    except Exception as exc:  # noqa: BLE001 - the SDK raises RuntimeError/AuthenticationError/requests errors
        text = str(exc)
        if type(exc).__name__ == "AuthenticationError" or "status code 401" in text or "status code 403" in text:
            raise ClusterAuthError(auth_hint(target)) from None
        if isinstance(exc, RuntimeError) and text.startswith("Request failed with status code"):
            raise ClusterError(f"the Ray Jobs API at {target.address} refused the request: "
                               f"{text.removeprefix('Request failed with ').rstrip('.')}") from exc
        if type(exc).__module__.startswith(("requests", "urllib3")):
            raise ClusterError(f"cannot reach the Ray Jobs API at {target.address} ({type(exc).__name__}); "
                               "check --address and that the cluster is up") from None
        raise


def jobs_client(target: ClusterTarget):
    """A `ray.job_submission.JobSubmissionClient` for `target`, connection and token checked.

    Raises:
        ClusterError: unreachable; ClusterAuthError: the token is missing or wrong.
    """
    import logging

    from ray.job_submission import JobSubmissionClient

    # The SDK logs package uploads and log-stream closes at INFO; our own lines say what happened.
    for name in ("ray.dashboard.modules.job.sdk", "ray.dashboard.modules.dashboard_sdk",
                 "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with translated_errors(target), _hidden(_ADDRESS_VARIABLES + ("RAY_AUTH_MODE",)):
        # RAY_AUTH_MODE hidden: we send our own header; Ray's would warn when it finds none.
        client = JobSubmissionClient(target.address, headers=target.headers)
        # /api/version (checked above) needs no token; a listing does: fail here, clearly.
        client.list_jobs()
    return client


def cluster_resources(target: ClusterTarget) -> dict[str, float] | None:
    """The totals of the cluster's logical resources (`CPU`, `mediajobs_driver`, ...), from
    the dashboard's cluster status; None when it does not answer with them."""
    import requests

    try:
        answer = requests.get(target.address.rstrip("/") + "/api/cluster_status", headers=target.headers, timeout=10)
        answer.raise_for_status()
        usage = answer.json()["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
        return {str(name): float(total) for name, (_, total) in usage.items()}
    except (requests.RequestException, KeyError, TypeError, ValueError):
        return None
