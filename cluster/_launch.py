"""Starting the local stack's components, and telling whether one already running may stay.

Every process started here carries `MEDIAJOBS_LOCAL_STACK=<home>` in its environment (Ray
workers inherit it), so `down` can find its own processes and nobody else's.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster import _home, _host, _ray_head
from cluster.errors import StackError

MARKER_VAR = "MEDIAJOBS_LOCAL_STACK"
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Launch:
    """How to start one component, and how to tell that it answers."""

    command: list[str]
    env: dict[str, str]
    fingerprint: str
    probe: Callable[[], bool]


def marker(home: Path) -> str:
    return f"{MARKER_VAR}={home}"


def launch_fingerprint(*values: str) -> str:
    # Recorded per process so a changed key pair or endpoint restarts what depends on it.
    return hashlib.sha256("\0".join(values).encode()).hexdigest()[:16]


def keep_if_current(home: Path, procs: dict, name: str, fingerprint: str, probe: Callable[[], bool]) -> bool:
    """True when the recorded process runs with these settings and answers; else stop it."""
    record = procs.get(name) or {}
    pid = record.get("pid")
    if not pid or not _host.carries_marker(pid, marker(home)):
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


def start_components(home: Path, state: dict, launches: dict[str, Launch], timeout: float) -> None:
    """Start each launch, record its pid in `state` and wait until all answer.

    Raises:
        StackError: a component exited or did not answer in time; whatever this call started
            is stopped again and its pid dropped from the state.
    """
    procs = state["processes"]
    started: dict[str, subprocess.Popen] = {}
    try:
        for name, launch in launches.items():
            started[name] = _host.spawn(launch.command, launch.env, _home.log_file(home, name), cwd=home)
            procs[name] = {"pid": started[name].pid, "fingerprint": launch.fingerprint}
        _home.write_state(home, state)  # pids first: a crash while waiting must not orphan them
        _wait_until_healthy(home, started, {name: launch.probe for name, launch in launches.items()}, timeout)
    except BaseException:
        _host.terminate({proc.pid: 3.0 for proc in started.values()})
        for name in started:
            procs.pop(name, None)
        _home.write_state(home, state)
        raise


def _wait_until_healthy(home: Path, started: dict[str, subprocess.Popen],
                        probes: dict[str, Callable[[], bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(started)
    while pending:
        for name, proc in list(pending.items()):
            if proc.poll() is not None:
                log = _home.log_file(home, name)
                raise StackError(f"{name} exited with code {proc.returncode} while starting; "
                                 f"see {log}:\n{_tail(log)}")
            if probes[name]():
                del pending[name]
        if pending and time.monotonic() > deadline:
            logs = ", ".join(str(_home.log_file(home, name)) for name in pending)
            raise StackError(f"{' and '.join(pending)} did not answer its health probe within {timeout:g} s; "
                             f"see {logs} (Ray's own logs: {_ray_head.runtime_dir(home)}/session_latest/logs)")
        if pending:
            time.sleep(_POLL_SECONDS)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
