"""The embedded local stack: a SeaweedFS S3 server and a Ray head on 127.0.0.1, one per home.

`up` starts whatever is not already running and healthy, `status` probes it, `env_lines`
prints shell exports for it and `down` stops exactly the processes `up` started. The state
lives in the home (`cluster.localstate`): stack.json (endpoints, ports, pids, no secrets) and
credentials.json (mode 0600). What a Ray client needs to pass the head's token
authentication is described in `cluster._ray_head` and returned by `ray_client_env`.

Every process `up` starts carries `MEDIAJOBS_LOCAL_STACK=<home>` in its environment (Ray
workers inherit it), so `down` can find its own processes and nobody else's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cluster import _host, _ray_head, _seaweed, localstate
from cluster.errors import StackError
from cluster.localstate import (
    DEFAULT_REGION,
    LocalStack,
    credentials_file,
    mediajobs_home,
    ray_auth_token_file,
    read_local_stack,
    stack_file,
)

__all__ = ["up", "down", "status", "env_lines", "ray_client_env", "StackStatus", "ComponentStatus"]

MARKER_VAR = "MEDIAJOBS_LOCAL_STACK"
START_TIMEOUT_SECONDS = 120.0
OBJECT_STORE_BYTES = 2 * 1024**3
_POLL_SECONDS = 0.25


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

    @property
    def healthy(self) -> bool:
        return bool(self.components) and all(c.healthy for c in self.components)


@dataclass(frozen=True)
class _Launch:
    """How to start one component, and how to tell that it answers."""

    command: list[str]
    env: dict[str, str]
    fingerprint: str
    probe: Callable[[], bool]


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
    home = _prepare_home(home)
    with _locked(home):
        state = _read_state(home)
        ports, procs = state.setdefault("ports", {}), state.setdefault("processes", {})
        creds = _ensure_credentials(home)
        token_file = ray_auth_token_file(home)
        _ray_head.ensure_token(token_file)
        runtime = _ensure_runtime_dir(home)
        identities = home / "seaweed-s3.json"
        _seaweed.write_identities(identities, creds)
        cpus = num_cpus or os.cpu_count() or 1

        # The volume settings are part of the fingerprint: a stack started with older ones restarts.
        weed_fp = _fingerprint(creds["access_key"], creds["secret_key"], creds["reader_access_key"],
                               creds["reader_secret_key"], *_seaweed.VOLUME_FLAGS,
                               *(f"{k}={v}" for k, v in sorted(_seaweed.VOLUME_ENV.items())))
        weed_ok = _seaweed.NAME in ports and _keep_if_current(home, procs, _seaweed.NAME, weed_fp, lambda: (
            _seaweed.is_healthy(_seaweed.s3_endpoint(ports[_seaweed.NAME]), *_key_pair(creds),
                                master_port=ports[_seaweed.NAME]["master"])))
        if not weed_ok:
            ports[_seaweed.NAME] = _host.allocate_ports(_seaweed.DEFAULT_PORTS, ports.get(_seaweed.NAME, {}),
                                                        taken=set(ports.get(_ray_head.NAME, {}).values()))
        endpoint = _seaweed.s3_endpoint(ports[_seaweed.NAME])
        s3_env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": creds["access_key"],
                  "AWS_SECRET_ACCESS_KEY": creds["secret_key"], "AWS_DEFAULT_REGION": creds["region"]}

        # A head started before it bound to loopback only (LOOPBACK_ENV) restarts.
        ray_fp = _fingerprint(*s3_env.values(), str(cpus), str(OBJECT_STORE_BYTES),
                              *(f"{k}={v}" for k, v in sorted(_ray_head.LOOPBACK_ENV.items())))
        ray_ok = _ray_head.NAME in ports and _keep_if_current(home, procs, _ray_head.NAME, ray_fp, lambda: (
            _ray_head.is_healthy(ports[_ray_head.NAME]["gcs"], _dashboard_url(ports), token_file)))
        if not ray_ok:
            ports[_ray_head.NAME] = _allocate_ray_ports(home, ports.get(_ray_head.NAME, {}),
                                                        taken=set(ports[_seaweed.NAME].values()))
        state.update(s3_endpoint=endpoint, ray_address=f"127.0.0.1:{ports[_ray_head.NAME]['gcs']}",
                     dashboard_url=_dashboard_url(ports), runtime_dir=str(runtime), ray_loopback_only=True)

        launches: dict[str, _Launch] = {}
        if not weed_ok:
            launches[_seaweed.NAME] = _Launch(
                _seaweed.server_command(home / "seaweed", identities, runtime, ports[_seaweed.NAME]),
                _seaweed.server_environment({**os.environ, MARKER_VAR: str(home)}), weed_fp,
                lambda: _seaweed.is_healthy(endpoint, *_key_pair(creds), master_port=ports[_seaweed.NAME]["master"]))
        if not ray_ok:
            rp = ports[_ray_head.NAME]
            launches[_ray_head.NAME] = _Launch(
                _ray_head.head_command(rp, (rp["min_worker"], rp["max_worker"]), runtime, cpus, OBJECT_STORE_BYTES),
                _ray_head.head_environment(dict(os.environ), s3_env, token_file, (MARKER_VAR, str(home))), ray_fp,
                lambda: _ray_head.is_healthy(rp["gcs"], state["dashboard_url"], token_file))

        started: dict[str, subprocess.Popen] = {}
        try:
            for name, launch in launches.items():
                started[name] = _host.spawn(launch.command, launch.env, _log_file(home, name), cwd=home)
                procs[name] = {"pid": started[name].pid, "fingerprint": launch.fingerprint}
            _write_state(home, state)  # pids first: a crash while waiting must not orphan them
            _wait_until_healthy(home, started, {name: launch.probe for name, launch in launches.items()}, timeout)
        except BaseException:
            _host.terminate({proc.pid: 3.0 for proc in started.values()})
            for name in started:
                procs.pop(name, None)
            _write_state(home, state)
            raise
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
    home = _resolve_home(home)
    if not home.is_dir():
        return []
    with _locked(home):
        try:
            state = _read_state(home)
        except StackError:
            state = {}  # unreadable: the marker sweep below still finds this home's processes
        procs = state.get("processes", {})
        graces = {_seaweed.NAME: _seaweed.STOP_GRACE_SECONDS, _ray_head.NAME: _ray_head.STOP_GRACE_SECONDS}
        targets, lines = {}, []
        for name, record in sorted(procs.items()):
            pid = record.get("pid")
            if pid and _host.carries_marker(pid, _marker(home)):
                targets[pid] = graces.get(name, 5.0)
                lines.append(f"stopped {name} (pid {pid})")
        _host.terminate(targets)
        leftovers = _host.marked_pids(_marker(home))  # e.g. Ray workers, which lead their own sessions
        if leftovers:
            _host.terminate({pid: 3.0 for pid in leftovers})
            lines.append(f"stopped {len(leftovers)} leftover process(es) of this stack")
        if not _host.marked_pids(_marker(home)):
            _remove_runtime_files(home, state.get("ports", {}).get(_seaweed.NAME, {}))
        if state:
            state["processes"] = {}
            _write_state(home, state)
    return lines


def status(home: Path | None = None) -> StackStatus:
    """Probe each recorded component (quickly; this never starts anything)."""
    home = _resolve_home(home)
    state, stack = _read_state(home), read_local_stack(home)
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
        pid = pid if pid and _host.carries_marker(pid, _marker(home)) else None
        components.append(ComponentStatus(name, endpoint, pid, pid is not None and probe(), _log_file(home, name)))
    return StackStatus(home, tuple(components), stack.dashboard_url)


def env_lines(home: Path | None = None) -> list[str]:
    """`export` lines for a shell: S3 endpoint and key pair, Ray address and auth settings.

    This is the one place that prints the secret key, on purpose, for `eval "$(...)"`.

    Raises:
        StackError: no stack was ever started under this home.
    """
    home = _resolve_home(home)
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
    return localstate.ray_client_env(stack, _resolve_home(home))


# --- state ---------------------------------------------------------------------------

def _resolve_home(home: Path | None) -> Path:
    return Path(home or mediajobs_home()).expanduser().resolve()


def _prepare_home(home: Path | None) -> Path:
    home = _resolve_home(home)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(home, 0o700)
    for sub in ("logs", "seaweed"):
        (home / sub).mkdir(exist_ok=True)
    return home


def _remove_runtime_files(home: Path, weed_ports: dict[str, int]) -> None:
    """Ray's session directory and the sockets under /tmp; logs and data stay in the home."""
    shutil.rmtree(_ray_head.runtime_dir(home), ignore_errors=True)
    for path in _seaweed.stale_socket_files(weed_ports):
        path.unlink(missing_ok=True)


def _ensure_runtime_dir(home: Path) -> Path:
    runtime = _ray_head.runtime_dir(home)
    runtime.mkdir(mode=0o700, exist_ok=True)
    if runtime.stat().st_uid != os.getuid():
        raise StackError(f"{runtime} belongs to another user; remove it or use another MEDIAJOBS_HOME")
    return runtime


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise `up`/`down` on one home (two terminals running `up` at once)."""
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_state(home: Path) -> dict:
    try:
        return json.loads(stack_file(home).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise StackError(f"{stack_file(home)} is not valid JSON ({exc}); remove it, then run "
                         "`mediajobs local down` to stop this home's processes and `up` again") from None


def _write_state(home: Path, state: dict) -> None:
    _write_private(stack_file(home), json.dumps(state, indent=2, sort_keys=True) + "\n", mode=0o644)


def _write_private(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _ensure_credentials(home: Path) -> dict[str, str]:
    """The S3 key pairs (the stack's and a read-only one), generated once and reused afterwards."""
    path = credentials_file(home)
    try:
        creds = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        creds = {}
    pairs = {"": "MJ", "reader_": "MR"}  # field prefix -> access key prefix
    missing = [field for field in pairs if not (creds.get(f"{field}access_key") and creds.get(f"{field}secret_key"))]
    for field in missing:  # a home from before the reader pair gets one; the main pair is kept
        creds[f"{field}access_key"] = pairs[field] + secrets.token_hex(9).upper()
        creds[f"{field}secret_key"] = secrets.token_urlsafe(30)
    creds = {"region": DEFAULT_REGION, **creds}
    if missing:
        _write_private(path, json.dumps(creds, indent=2) + "\n")
    os.chmod(path, 0o600)
    return creds


def _key_pair(creds: dict[str, str]) -> tuple[str, str, str]:
    return creds["access_key"], creds["secret_key"], creds["region"]


def _fingerprint(*values: str) -> str:
    # Recorded per process so a changed key pair or endpoint restarts what depends on it.
    return hashlib.sha256("\0".join(values).encode()).hexdigest()[:16]


def _dashboard_url(ports: dict) -> str:
    return f"http://127.0.0.1:{ports[_ray_head.NAME]['dashboard']}"


def _log_file(home: Path, name: str) -> Path:
    return home / "logs" / f"{name}.log"


# --- ports and processes ---------------------------------------------------------------

def _allocate_ray_ports(home: Path, recorded: dict[str, int], taken: set[int]) -> dict[str, int]:
    ports = _host.allocate_ports(_ray_head.DEFAULT_PORTS, recorded, taken)
    ports["min_worker"], ports["max_worker"] = _host.free_port_block(
        str(home), _ray_head.WORKER_PORT_COUNT, recorded.get("min_worker"), taken)
    return ports


def _marker(home: Path) -> str:
    return f"{MARKER_VAR}={home}"


def _wait_until_healthy(home: Path, started: dict[str, subprocess.Popen],
                        probes: dict[str, Callable[[], bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(started)
    while pending:
        for name, proc in list(pending.items()):
            if proc.poll() is not None:
                raise StackError(f"{name} exited with code {proc.returncode} while starting; "
                                 f"see {_log_file(home, name)}:\n{_tail(_log_file(home, name))}")
            if probes[name]():
                del pending[name]
        if pending and time.monotonic() > deadline:
            logs = ", ".join(str(_log_file(home, name)) for name in pending)
            raise StackError(f"{' and '.join(pending)} did not answer its health probe within {timeout:g} s; "
                             f"see {logs} (Ray's own logs: {_ray_head.runtime_dir(home)}/session_latest/logs)")
        if pending:
            time.sleep(_POLL_SECONDS)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _keep_if_current(home: Path, procs: dict, name: str, fingerprint: str, probe: Callable[[], bool]) -> bool:
    """True when the recorded process runs with these settings and answers; else stop it."""
    record = procs.get(name) or {}
    pid = record.get("pid")
    if not pid or not _host.carries_marker(pid, _marker(home)):
        return False
    if record.get("fingerprint") == fingerprint and _answers_within(probe, 5.0):
        return True
    _host.terminate({pid: 5.0})
    return False


def _answers_within(probe: Callable[[], bool], seconds: float) -> bool:
    # A loaded machine can miss one probe; do not restart a busy but working server for it.
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True
