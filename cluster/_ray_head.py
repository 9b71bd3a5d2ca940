"""The Ray head of the local stack: its `ray start` command, environment, auth token and probe.

Token authentication stays on. The head is started with `RAY_AUTH_MODE=token` and
`RAY_AUTH_TOKEN_PATH=<home>/ray_auth_token` (a token this stack generates, mode 0600), so
it neither needs nor touches `~/.ray/auth_token`, and two stacks on one machine have
different tokens. A client process connects when its environment holds, before `ray` is
imported (Ray caches the auth mode at import time):

    RAY_AUTH_MODE=token
    RAY_AUTH_TOKEN_PATH=<home>/ray_auth_token   (and no RAY_AUTH_TOKEN: it would win)
    RAY_ADDRESS=127.0.0.1:<gcs port>            for ray.init() / ray.init(address=...)
    RAY_API_SERVER_ADDRESS=http://127.0.0.1:<dashboard port>
                                                for JobSubmissionClient() and `ray job ...`

`cluster.localstate.ray_client_env` builds these. `JobSubmissionClient` sends the token as an
`Authorization: Bearer` header, found through the same variables. Without them a driver
fails with "Authentication token is missing or incorrect" and the Jobs API answers 401.
A process that imported `ray` before setting them must refresh Ray's config with
`ray._raylet.Config.initialize("")` (what Ray's own auto-enable does) before `ray.init`.

Every listener is on 127.0.0.1. On Linux Ray would replace `--node-ip-address=127.0.0.1`
by the host's own address and bind its gRPC servers (GCS, raylet, object manager,
agents) on all interfaces; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (LOOPBACK_ENV) makes it
keep the loopback address and bind there, as it does on a laptop. That switch also
decides which address a driver calls its own, so every process that connects to the
head needs it too: the head's workers and submitted jobs inherit it, and
`ray_client_env` hands it to outside clients. A one-node stack loses nothing by it
(it only refuses `ray start --address` from another machine). The token still guards
every port.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import socket
import sys
import urllib.request
from pathlib import Path

from cluster import _host, localstate

NAME = "ray-head"

# The ports `ray start --head` would use on its own (None: Ray picks a random one, which
# we pin instead so the recorded ports describe the running head).
DEFAULT_PORTS: dict[str, int | None] = {
    "gcs": 6379,
    "dashboard": 8265,
    "client_server": 10001,
    "dashboard_agent_http": 52365,
    "dashboard_agent_grpc": None,
    "node_manager": None,
    "object_manager": None,
    "runtime_env_agent": None,
    "metrics_export": None,
}
WORKER_PORT_COUNT = 500  # one port per live worker process

# `ray start --block` tears its children down on SIGTERM in about 2 s.
STOP_GRACE_SECONDS = 10.0


def ray_binary() -> str:
    return _host.venv_binary("ray", "install mediajobs with its dependencies")


def runtime_dir(home: Path) -> Path:
    """A short per-stack directory under /tmp: Ray's temp dir and the Unix sockets.

    Unix socket paths are limited to ~107 bytes, so this cannot live under an arbitrary
    MEDIAJOBS_HOME; it is keyed by a hash of the home so two stacks never share it.
    """
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10]
    return Path("/tmp") / f"mediajobs-{digest}"


def ensure_token(path: Path) -> None:
    """Create the head's auth token (mode 0600) on first use; keep it afterwards."""
    if path.exists() and path.read_text().strip():
        os.chmod(path, 0o600)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))  # the same shape as `ray get-auth-token --generate`


# Read by Ray when `ray` is imported (`ray_constants.ENABLE_RAY_CLUSTER`): "0" keeps a
# node on 127.0.0.1 (see the module docstring).
LOOPBACK_ENV = localstate.LOOPBACK_ENV


def head_command(ports: dict[str, int], worker_ports: tuple[int, int], temp_dir: Path,
                 num_cpus: int, object_store_bytes: int) -> list[str]:
    return [
        ray_binary(), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={ports['gcs']}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={ports['dashboard']}",
        f"--ray-client-server-port={ports['client_server']}",
        f"--dashboard-agent-listen-port={ports['dashboard_agent_http']}",
        f"--dashboard-agent-grpc-port={ports['dashboard_agent_grpc']}",
        f"--node-manager-port={ports['node_manager']}",
        f"--object-manager-port={ports['object_manager']}",
        f"--runtime-env-agent-port={ports['runtime_env_agent']}",
        f"--metrics-export-port={ports['metrics_export']}",
        f"--min-worker-port={worker_ports[0]}", f"--max-worker-port={worker_ports[1]}",
        f"--temp-dir={temp_dir}",
        f"--num-cpus={num_cpus}",
        f"--object-store-memory={object_store_bytes}",
        "--disable-usage-stats",
    ]


def head_environment(base: dict[str, str], s3_env: dict[str, str], token_file: Path,
                     marker: tuple[str, str]) -> dict[str, str]:
    """The head's environment; Ray workers inherit it, so jobs reach S3 without secrets in specs."""
    env = {k: v for k, v in base.items()
           if not k.startswith("AWS_") and k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER_ADDRESS")}
    env.update(s3_env)
    env["TF_USE_LEGACY_KERAS"] = "1"  # tf-keras everywhere: Keras 3 breaks MWMS (shared/FACTS.md)
    # Submitted jobs run `python -m jobs.cli.app ...`: this interpreter (the venv's), even when
    # `mediajobs local up` was run without activating the venv.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    env.update(LOOPBACK_ENV)
    env.update(localstate.NO_USAGE_STATS_ENV)  # workers agree with `--disable-usage-stats`
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    # SIGTERM would first drain the node (for Serve on Kubernetes) for up to 30 s, and that
    # drain was seen to hang when `down` followed `up` closely; a local stack stops at once.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    env[marker[0]] = marker[1]
    return env


def is_healthy(gcs_port: int, dashboard_url: str, token_file: Path) -> bool:
    """True when the GCS port accepts a connection and the Jobs API answers an authenticated GET."""
    try:
        with socket.create_connection(("127.0.0.1", gcs_port), timeout=1):
            pass
        token = token_file.read_text().strip()
        request = urllib.request.Request(f"{dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):  # URLError is an OSError
        return False
