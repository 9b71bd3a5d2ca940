"""What the local stack needs from this machine: free ports, and processes it starts,
recognises again later (by a marker in their environment) and stops."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

from cluster.errors import StackError

HAS_PROC = Path("/proc/self/environ").exists()
_children: dict[int, subprocess.Popen] = {}  # processes this interpreter started, to reap them

# Worker port blocks sit between Ray's default worker range (10002-19999) and Linux's
# ephemeral ports (32768+), where the random ports of `random_free_port` come from.
_BLOCKS_START, _BLOCKS_END = 20000, 32700


def venv_binary(name: str, hint: str) -> str:
    """A command installed beside this interpreter (the venv), else on PATH.

    Raises:
        StackError: with `hint` (how to install it) when it is in neither place.
    """
    import shutil
    import sys

    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"the `{name}` command was not found; {hint}")
    return found


# --- ports ---------------------------------------------------------------------------

def port_free(port: int) -> bool:
    # Ray binds its gRPC servers on all interfaces, so test the wildcard address.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def random_free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def allocate_ports(defaults: dict[str, int | None], recorded: dict[str, int], taken: set[int]) -> dict[str, int]:
    """Ports by name: the recorded one if free, else the default if free, else any free one.

    Chosen ports are added to `taken`.
    """
    chosen: dict[str, int] = {}
    for name, default in defaults.items():
        for candidate in (recorded.get(name), default):
            if candidate and candidate not in taken and port_free(candidate):
                break
        else:
            candidate = random_free_port(taken)
        chosen[name] = candidate
        taken.add(candidate)
    return chosen


def free_port_block(key: str, count: int, recorded_first: int | None, taken: set[int]) -> tuple[int, int]:
    """A block of `count` free ports (first, last) between 20000 and 32699.

    The recorded block is kept when free. Otherwise the search starts at an offset keyed by
    `key`, so two stacks get different blocks even while one's workers are not running.
    """
    def usable(first: int) -> bool:
        block = range(first, first + count)
        return not taken.intersection(block) and all(port_free(p) for p in block)

    if recorded_first and usable(recorded_first):
        return recorded_first, recorded_first + count - 1
    blocks = (_BLOCKS_END - _BLOCKS_START) // count
    offset = int(hashlib.sha256(key.encode()).hexdigest(), 16) % blocks
    for i in range(blocks):
        first = _BLOCKS_START + ((offset + i) % blocks) * count
        if usable(first):
            return first, first + count - 1
    raise StackError(f"no free block of {count} ports between {_BLOCKS_START} and {_BLOCKS_END - 1}")


# --- processes -----------------------------------------------------------------------

def spawn(command: list[str], env: dict[str, str], log_file: Path, cwd: Path) -> subprocess.Popen:
    """Start `command` in a new session (it leads its own process group), output to `log_file`."""
    with open(log_file, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _children[proc.pid] = proc
    return proc


def alive(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None  # also reaps it
    if not HAS_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")  # a zombie has exited


def _environ_has(pid: int, entry: bytes) -> bool:
    try:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def carries_marker(pid: int, marker: str) -> bool:
    """True when `pid` runs with `marker` ("NAME=value") in its environment; this guards
    against a recorded pid that now belongs to another process. Without /proc, trust the pid."""
    if not alive(pid):
        return False
    return not HAS_PROC or _environ_has(pid, marker.encode())


def marked_pids(marker: str) -> list[int]:
    """Every live process (but this one) with `marker` in its environment."""
    if not HAS_PROC:
        return []
    entry = marker.encode()
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]
    return [pid for pid in pids if _environ_has(pid, entry) and alive(pid)]


def terminate(targets: dict[int, float]) -> None:
    """SIGTERM each pid, wait up to its grace, then SIGKILL it and the rest of its process group.

    Only the leader gets SIGTERM, so that `ray start --block` stops its children in order.
    """
    groups = {}
    for pid in targets:
        try:
            groups[pid] = os.getpgid(pid) == pid
        except ProcessLookupError:
            continue
        _signal(pid, signal.SIGTERM, False)
    start = time.monotonic()
    for pid, leads_group in groups.items():
        if not _wait_gone(pid, start + targets[pid]):
            _signal(pid, signal.SIGKILL, leads_group)
            _wait_gone(pid, time.monotonic() + 5.0)
        if leads_group:  # whatever the leader left behind in its group
            _signal(pid, signal.SIGKILL, True)
            deadline = time.monotonic() + 5.0
            while any(alive(member) for member in _group_members(pid)) and time.monotonic() < deadline:
                time.sleep(0.05)
        _children.pop(pid, None)


def _signal(pid: int, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_gone(pid: int, deadline: float) -> bool:
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _group_members(pgid: int) -> list[int]:
    if not HAS_PROC:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # the fields after the name: state, ppid, pgrp, ...
                members.append(int(entry.name))
    return members
