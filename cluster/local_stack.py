"""The embedded local stack: a SeaweedFS S3 server and a Ray head on 127.0.0.1, one per home.

`up` starts whatever is not already running and healthy, `status` probes it, `env_lines`
prints shell exports for it and `down` stops exactly the processes `up` started. The state
lives in the home (`cluster.localstate` reads it, `cluster._home` writes it): stack.json
(endpoints, ports, pids, no secrets) and credentials.json (mode 0600). What a Ray client needs
to pass the head's token authentication is described in `cluster._ray_head` and returned by
`ray_client_env`.

Every process `up` starts carries `MEDIAJOBS_LOCAL_STACK=<home>` in its environment (Ray
workers inherit it), so `down` can find its own processes and nobody else's
(`cluster._launch`).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from cluster import _home, _host, _ray_head, _seaweed, localstate
from cluster._launch import MARKER_VAR, Launch, keep_if_current, launch_fingerprint, marker, start_components
from cluster.errors import StackError
from cluster.localstate import LocalStack, ray_auth_token_file, read_local_stack

__all__ = ["up", "down", "status", "env_lines", "ray_client_env", "StackStatus", "ComponentStatus"]

START_TIMEOUT_SECONDS = 120.0
OBJECT_STORE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class ComponentStatus:
    """One process of the stack: `pid` is None when it is not running."""

    name: str
    endpoint: str
    pid: int | None
    healthy: bool
    log_file: Path


@dataclass(frozen=True)
class StackStatus:
    """What `status` found under `state_dir`; no component means the stack was never started."""

    state_dir: Path
    components: tuple[ComponentStatus, ...]
    dashboard_url: str | None
    metrics_url: str = ""  # the head's Prometheus endpoint

    @property
    def healthy(self) -> bool:
        return bool(self.components) and all(c.healthy for c in self.components)


def up(home: Path | None = None, *, num_cpus: int | None = None,
       timeout: float = START_TIMEOUT_SECONDS) -> LocalStack:
    """Start the local stack, or leave it alone where it already runs and answers.

    Both components start concurrently; a dead or unhealthy one, or one whose settings
    changed, is (re)started. Ports, credentials and data are kept from one `up` to the next.

    Args:
        home: the state directory; defaults to `$MEDIAJOBS_HOME` or `~/.mediajobs`.
        num_cpus: CPUs the Ray head offers; defaults to `os.cpu_count()`.
        timeout: seconds to wait for the health probes.

    Returns:
        The endpoints and key pair of the running stack.

    Raises:
        StackError: a component did not start or answer in time (the message names its log).
    """
    home = _home.prepare_home(home)
    with _home.locked(home):
        state = _home.read_state(home)
        ports = state.setdefault("ports", {})
        state.setdefault("processes", {})
        creds = _home.ensure_credentials(home)
        token_file = ray_auth_token_file(home)
        _ray_head.ensure_token(token_file)
        runtime = _home.ensure_runtime_dir(home)

        # The S3 server first: the head's environment carries its endpoint and key pair.
        weed = _seaweed_launch(home, state, creds, runtime)
        endpoint = _seaweed.s3_endpoint(ports[_seaweed.NAME])
        s3_env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": creds["access_key"],
                  "AWS_SECRET_ACCESS_KEY": creds["secret_key"], "AWS_DEFAULT_REGION": creds["region"]}
        head = _ray_head_launch(home, state, s3_env, runtime, token_file, num_cpus or os.cpu_count() or 1)
        state.update(s3_endpoint=endpoint, ray_address=f"127.0.0.1:{ports[_ray_head.NAME]['gcs']}",
                     dashboard_url=_dashboard_url(ports), runtime_dir=str(runtime), ray_loopback_only=True,
                     metrics_url=f"http://127.0.0.1:{ports[_ray_head.NAME]['metrics_export']}/metrics")

        launches = {name: launch for name, launch in ((_seaweed.NAME, weed), (_ray_head.NAME, head)) if launch}
        start_components(home, state, launches, timeout)
    stack = read_local_stack(home)
    if stack is None:  # we just wrote both files; only a concurrent `rm` gets here
        raise StackError(f"the stack state under {home} vanished while starting")
    return stack


def down(home: Path | None = None) -> list[str]:
    """Stop the processes `up` started under this home, by recorded pid and process group.

    Credentials, ports, data and logs stay in the home; Ray's session directory under /tmp
    goes. Processes of other homes (another stack, a developer's Ray) are never touched.

    Returns:
        One human-readable line per thing stopped (empty when nothing was running).
    """
    home = _home.resolve_home(home)
    if not home.is_dir():
        return []
    with _home.locked(home):
        try:
            state = _home.read_state(home)
        except StackError:
            state = {}  # unreadable: the marker sweep below still finds this home's processes
        procs = state.get("processes", {})
        graces = {_seaweed.NAME: _seaweed.STOP_GRACE_SECONDS, _ray_head.NAME: _ray_head.STOP_GRACE_SECONDS}
        targets, lines = {}, []
        for name, record in sorted(procs.items()):
            pid = record.get("pid")
            if pid and _host.carries_marker(pid, marker(home)):
                targets[pid] = graces.get(name, 5.0)
                lines.append(f"stopped {name} (pid {pid})")
        _host.terminate(targets)
        leftovers = _host.marked_pids(marker(home))  # e.g. Ray workers, which lead their own sessions
        if leftovers:
            _host.terminate({pid: 3.0 for pid in leftovers})
            lines.append(f"stopped {len(leftovers)} leftover process(es) of this stack")
        if not _host.marked_pids(marker(home)):
            _home.remove_runtime_files(home, state.get("ports", {}).get(_seaweed.NAME, {}))
        if state:
            state["processes"] = {}
            _home.write_state(home, state)
    return lines


def status(home: Path | None = None) -> StackStatus:
    """Probe each recorded component (quickly; this never starts anything)."""
    home = _home.resolve_home(home)
    state, stack = _home.read_state(home), read_local_stack(home)
    ports, procs = state.get("ports", {}), state.get("processes", {})
    if stack is None or _seaweed.NAME not in ports or _ray_head.NAME not in ports:
        return StackStatus(home, (), None)
    token_file = ray_auth_token_file(home)
    probes = {
        _seaweed.NAME: (stack.s3_endpoint, lambda: _seaweed.is_healthy(
            stack.s3_endpoint, stack.access_key, stack.secret_key, stack.region,
            master_port=ports[_seaweed.NAME]["master"])),
        _ray_head.NAME: (stack.ray_address, lambda: _ray_head.is_healthy(
            ports[_ray_head.NAME]["gcs"], stack.dashboard_url, token_file)),
    }
    components = []
    for name, (endpoint, probe) in probes.items():
        pid = procs.get(name, {}).get("pid")
        pid = pid if pid and _host.carries_marker(pid, marker(home)) else None
        components.append(ComponentStatus(name, endpoint, pid, pid is not None and probe(), _home.log_file(home, name)))
    return StackStatus(home, tuple(components), stack.dashboard_url, stack.metrics_url)


def env_lines(home: Path | None = None) -> list[str]:
    """`export` lines for a shell: S3 endpoint and key pair, Ray address and auth settings.

    This is the one place that prints the secret key, on purpose, for `eval "$(...)"`.

    Raises:
        StackError: no stack was ever started under this home.
    """
    home = _home.resolve_home(home)
    stack = read_local_stack(home)
    if stack is None:
        raise StackError(f"no local stack under {home}; start one with `mediajobs local up`")
    env = {"AWS_ENDPOINT_URL": stack.s3_endpoint, "AWS_ACCESS_KEY_ID": stack.access_key,
           "AWS_SECRET_ACCESS_KEY": stack.secret_key, "AWS_DEFAULT_REGION": stack.region,
           **ray_client_env(stack, home)}
    return [f"export {key}={shlex.quote(value)}" for key, value in env.items()]


def ray_client_env(stack: LocalStack, home: Path | None = None) -> dict[str, str]:
    """The variables a Ray driver or Jobs API client needs for this stack (no secrets).

    Set them before `ray` is imported; see `cluster.localstate.ray_client_env`.
    """
    return localstate.ray_client_env(stack, _home.resolve_home(home))


# --- what `up` starts ------------------------------------------------------------------

def _seaweed_launch(home: Path, state: dict, creds: dict[str, str], runtime: Path) -> Launch | None:
    """How to start the S3 server on its (re)allocated ports; None when the running one may stay."""
    ports, procs = state["ports"], state["processes"]
    identities = home / "seaweed-s3.json"
    _seaweed.write_identities(identities, creds)
    # The volume settings are part of the fingerprint: a stack started with older ones restarts.
    fingerprint = launch_fingerprint(creds["access_key"], creds["secret_key"], creds["reader_access_key"],
                                       creds["reader_secret_key"], *_seaweed.VOLUME_FLAGS,
                                       *(f"{k}={v}" for k, v in sorted(_seaweed.VOLUME_ENV.items())))

    def answers() -> bool:
        return _seaweed.is_healthy(_seaweed.s3_endpoint(ports[_seaweed.NAME]), *_key_pair(creds),
                                   master_port=ports[_seaweed.NAME]["master"])

    if _seaweed.NAME in ports and keep_if_current(home, procs, _seaweed.NAME, fingerprint, answers):
        return None
    ports[_seaweed.NAME] = _host.allocate_ports(_seaweed.DEFAULT_PORTS, ports.get(_seaweed.NAME, {}),
                                                taken=set(ports.get(_ray_head.NAME, {}).values()))
    return Launch(_seaweed.server_command(home / "seaweed", identities, runtime, ports[_seaweed.NAME]),
                  _seaweed.server_environment({**os.environ, MARKER_VAR: str(home)}), fingerprint, answers)


def _ray_head_launch(home: Path, state: dict, s3_env: dict[str, str], runtime: Path, token_file: Path,
                     cpus: int) -> Launch | None:
    """How to start the Ray head on its (re)allocated ports; None when the running one may stay."""
    ports, procs = state["ports"], state["processes"]
    # A head started before it bound to loopback only (LOOPBACK_ENV) restarts.
    fingerprint = launch_fingerprint(*s3_env.values(), str(cpus), str(OBJECT_STORE_BYTES),
                                       *(f"{k}={v}" for k, v in sorted(_ray_head.LOOPBACK_ENV.items())))

    def answers() -> bool:
        return _ray_head.is_healthy(ports[_ray_head.NAME]["gcs"], _dashboard_url(ports), token_file)

    if _ray_head.NAME in ports and keep_if_current(home, procs, _ray_head.NAME, fingerprint, answers):
        return None
    rp = ports[_ray_head.NAME] = _allocate_ray_ports(home, ports.get(_ray_head.NAME, {}),
                                                      taken=set(ports[_seaweed.NAME].values()))
    return Launch(_ray_head.head_command(rp, (rp["min_worker"], rp["max_worker"]), runtime, cpus, OBJECT_STORE_BYTES),
                  _ray_head.head_environment(dict(os.environ), s3_env, token_file, (MARKER_VAR, str(home))),
                  fingerprint, answers)


# --- endpoints and ports ---------------------------------------------------------------

def _key_pair(creds: dict[str, str]) -> tuple[str, str, str]:
    return creds["access_key"], creds["secret_key"], creds["region"]


def _dashboard_url(ports: dict) -> str:
    return f"http://127.0.0.1:{ports[_ray_head.NAME]['dashboard']}"


def _allocate_ray_ports(home: Path, recorded: dict[str, int], taken: set[int]) -> dict[str, int]:
    ports = _host.allocate_ports(_ray_head.DEFAULT_PORTS, recorded, taken)
    ports["min_worker"], ports["max_worker"] = _host.free_port_block(
        str(home), _ray_head.WORKER_PORT_COUNT, recorded.get("min_worker"), taken)
    return ports
