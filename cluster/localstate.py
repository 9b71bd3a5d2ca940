"""Where the embedded local stack keeps its state, and how jobs find it.

`cluster.local_stack` writes this state; `jobs` only reads it, so the dependency
points one way (cluster -> jobs). Secrets live in `credentials.json` (mode 0600);
`stack.json` holds endpoints and pids, nothing secret.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REGION = "us-east-1"
# Keeps a Ray node, or a driver, on 127.0.0.1 (read when `ray` is imported). Defined here,
# not in cluster/, because jobs only read the stack (the dependency points cluster -> jobs).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# The local head runs with `--disable-usage-stats`; its drivers and workers must say so too,
# or every Ray Data run starts a usage-collection actor and a thread that polls a
# Prometheus server the stack does not run (each failure logged with a traceback).
NO_USAGE_STATS_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def mediajobs_home() -> Path:
    """The state directory: `$MEDIAJOBS_HOME`, else `~/.mediajobs`."""
    return Path(os.environ.get("MEDIAJOBS_HOME") or Path.home() / ".mediajobs").expanduser()


def stack_file(home: Path | None = None) -> Path:
    return (home or mediajobs_home()) / "stack.json"


def credentials_file(home: Path | None = None) -> Path:
    return (home or mediajobs_home()) / "credentials.json"


def ray_auth_token_file(home: Path | None = None) -> Path:
    """The Ray head's auth token (mode 0600); clients point `RAY_AUTH_TOKEN_PATH` at it."""
    return (home or mediajobs_home()) / "ray_auth_token"


@dataclass(frozen=True)
class LocalStack:
    """What a running local stack offers to jobs (endpoints and the S3 key pair)."""

    s3_endpoint: str
    access_key: str
    secret_key: str
    region: str
    ray_address: str  # GCS address, host:port, for ray.init(address=...)
    dashboard_url: str  # http://host:port, for the Jobs API
    # The head binds to 127.0.0.1 only; its clients must then keep 127.0.0.1 as their own
    # address too (cluster._ray_head.LOOPBACK_ENV). False for a head started by an older `up`.
    loopback_only: bool = False
    # The head's Prometheus endpoint (what every job on it records: jobs.workers.metrics);
    # "" for a stack started by an older `up`.
    metrics_url: str = ""

    def __repr__(self) -> str:  # never show the secret, even in a traceback
        return (f"LocalStack(s3_endpoint={self.s3_endpoint!r}, ray_address={self.ray_address!r}, "
                f"dashboard_url={self.dashboard_url!r})")


def ray_client_env(stack: LocalStack, home: Path | None = None) -> dict[str, str]:
    """The variables a Ray driver or Jobs API client needs for the local stack's head (no secrets).

    The head requires token auth, with the token in `ray_auth_token_file(home)` (not
    `~/.ray/auth_token`). Ray reads `RAY_AUTH_MODE` when it is imported: set these before
    `import ray` (a process that already imported it must refresh its config with
    `ray._raylet.Config.initialize("")`, as Ray itself does), and unset `RAY_AUTH_TOKEN`,
    which would override the file.
    """
    return {
        "RAY_ADDRESS": stack.ray_address,  # ray.init()
        "RAY_API_SERVER_ADDRESS": stack.dashboard_url,  # JobSubmissionClient(), `ray job ...`
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(ray_auth_token_file(home)),
        **(LOOPBACK_ENV if stack.loopback_only else {}),
        **NO_USAGE_STATS_ENV,
    }


def read_local_stack(home: Path | None = None) -> LocalStack | None:
    """The local stack recorded under `home`, or None when none was started.

    This does not probe health: callers that need a live stack check it themselves.
    """
    state_path, creds_path = stack_file(home), credentials_file(home)
    if not state_path.exists() or not creds_path.exists():
        return None
    try:
        state = json.loads(state_path.read_text())
        creds = json.loads(creds_path.read_text())
        return LocalStack(
            s3_endpoint=state["s3_endpoint"],
            access_key=creds["access_key"],
            secret_key=creds["secret_key"],
            region=creds.get("region", DEFAULT_REGION),
            ray_address=state["ray_address"],
            dashboard_url=state["dashboard_url"],
            loopback_only=bool(state.get("ray_loopback_only", False)),
            metrics_url=state.get("metrics_url", ""),
        )
    except (OSError, ValueError, KeyError):
        return None
