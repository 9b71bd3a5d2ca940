"""A real multi-node Ray cluster on this machine for the submission tests, made the way a
user makes one: `ray start --head`, then `ray start --address ...` for each further node.

Token authentication is on (Ray's default), with the token in a file of the test's own
(`RAY_AUTH_TOKEN_PATH`), so a developer's `~/.ray/auth_token` is neither used nor touched.
The nodes get the S3 endpoint and key pair in their environment, as a cluster's nodes get
them from their own environment or IAM role: nothing secret travels with a job.
Every process carries a marker variable, so `stop` ends exactly this cluster's processes
(`ray stop` would end every Ray on the machine, the session's local stack included).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cluster import _host

MARKER = "MEDIAJOBS_TEST_CLUSTER"


@dataclass
class RayCluster:
    root: Path
    token_file: Path
    gcs_port: int
    dashboard_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def client_env(self, base: dict[str, str]) -> dict[str, str]:
        """A client shell's environment: no Ray or AWS settings but the token file's path."""
        env = {k: v for k, v in base.items() if not k.startswith(("RAY_", "AWS_")) and k != "MEDIAJOBS_HOME"}
        env["RAY_AUTH_TOKEN_PATH"] = str(self.token_file)
        return env

    def alive_nodes(self) -> int:
        request = urllib.request.Request(f"{self.dashboard_url}/nodes?view=summary",
                                         headers={"Authorization": f"Bearer {self.token_file.read_text().strip()}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            summary = json.load(response)["data"]["summary"]
        return sum(1 for node in summary if node.get("raylet", {}).get("state") == "ALIVE")


def _node_env(cluster: RayCluster, s3_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}
    env.update(s3_env)
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(cluster.token_file),
                "TF_USE_LEGACY_KERAS": "1", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
                MARKER: str(cluster.root)})
    return env


def start_cluster(root: Path, s3_env: dict[str, str], nodes: list[dict], timeout: float = 120.0) -> RayCluster:
    """A head and `len(nodes) - 1` more nodes; `nodes[i]` holds `num_cpus` and optional `resources`."""
    root.mkdir(parents=True, exist_ok=True)
    token_file = root / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    os.chmod(token_file, 0o600)
    taken: set[int] = set()
    gcs = _host.random_free_port(taken)
    taken.add(gcs)
    dashboard = _host.random_free_port(taken)
    taken.add(dashboard)
    cluster = RayCluster(root, token_file, gcs, dashboard)
    env = _node_env(cluster, s3_env)
    ray = _host.venv_binary("ray", "install mediajobs with its dependencies")
    temp_dir = Path("/tmp") / f"mj-test-{secrets.token_hex(3)}"  # short: Unix socket paths are limited
    for index, node in enumerate(nodes):
        # Every node's own listeners on free ports: Ray's defaults (e.g. the agent's 52365)
        # are taken by the session's local stack, and by the other node on this machine.
        ports = {}
        for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                     "runtime-env-agent-port", "node-manager-port", "object-manager-port"):
            ports[name] = _host.random_free_port(taken)
            taken.add(ports[name])
        command = [ray, "start", "--block", "--disable-usage-stats", f"--num-cpus={node['num_cpus']}",
                   "--node-ip-address=127.0.0.1", "--object-store-memory=500000000",
                   *(f"--{name}={port}" for name, port in ports.items())]
        if node.get("resources"):
            command.append(f"--resources={json.dumps(node['resources'])}")
        if index == 0:
            client_port = _host.random_free_port(taken)
            taken.add(client_port)
            command += ["--head", f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                        "--include-dashboard=true", f"--temp-dir={temp_dir}", f"--ray-client-server-port={client_port}"]
        else:
            command.append(f"--address={cluster.gcs_address}")
        cluster.processes.append(_host.spawn(command, env, root / f"node-{index}.log", cwd=root))
        _wait(lambda: _answers(cluster, index + 1), timeout, cluster, f"node {index}")
    return cluster


def _answers(cluster: RayCluster, nodes: int) -> bool:
    try:
        return cluster.alive_nodes() >= nodes
    except (OSError, ValueError, KeyError):
        return False


def _wait(probe, timeout: float, cluster: RayCluster, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if any(p.poll() is not None for p in cluster.processes) or time.monotonic() > deadline:
            logs = "\n".join(path.read_text()[-2000:] for path in sorted(cluster.root.glob("node-*.log")))
            stop_cluster(cluster)
            raise RuntimeError(f"the test Ray cluster did not bring up {what}:\n{logs}")
        time.sleep(0.5)


def stop_cluster(cluster: RayCluster) -> None:
    """Stop the nodes (the head last) and every process that carries this cluster's marker."""
    _host.terminate({p.pid: 10.0 for p in reversed(cluster.processes)})
    leftovers = _host.marked_pids(f"{MARKER}={cluster.root}")
    if leftovers:
        _host.terminate({pid: 3.0 for pid in leftovers})
