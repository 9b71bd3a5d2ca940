"""The embedded local stack: idempotent `up`, private credentials, S3 that demands keys, a Ray
head that takes authenticated drivers, and a `down` that stops only its own processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import time

import pytest

from cluster import _home, _host
from cluster import local_stack as stack_api
from cluster.localstate import credentials_file
from jobs.errors import StackError


def test_port_allocation_prefers_recorded_then_default_and_skips_busy_ports():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        free_port = _host.random_free_port(set())
        chosen = _host.allocate_ports({"busy": busy_port, "free": free_port, "any": None}, {}, taken=set())
        assert chosen["busy"] != busy_port
        assert chosen["free"] == free_port
        assert len(set(chosen.values())) == 3
        recorded = _host.allocate_ports({"free": busy_port}, {"free": free_port}, taken=set())
        assert recorded == {"free": free_port}


def test_worker_port_block_is_kept_when_free_and_avoids_busy_ports():
    first, last = _host.free_port_block("/some/home", 100, None, taken=set())
    assert last - first == 99 and 20000 <= first and last < 32700
    assert _host.free_port_block("/some/home", 100, first, taken=set()) == (first, last)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", first + 7))
        busy.listen()
        moved = _host.free_port_block("/some/home", 100, first, taken=set())
    assert not moved[0] <= first + 7 <= moved[1]


def test_credentials_are_generated_once_and_private(tmp_path):
    first = _home.ensure_credentials(tmp_path)
    again = _home.ensure_credentials(tmp_path)
    assert first == again
    assert len(first["secret_key"]) >= 40 and first["access_key"].startswith("MJ")
    assert stat.S_IMODE(credentials_file(tmp_path).stat().st_mode) == 0o600
    assert first["reader_access_key"].startswith("MR") and first["reader_secret_key"] != first["secret_key"]
    (tmp_path / "other").mkdir()
    assert _home.ensure_credentials(tmp_path / "other")["secret_key"] != first["secret_key"]


def test_a_home_from_before_the_reader_pair_keeps_its_key_pair_and_gains_a_reader(tmp_path):
    old = {"access_key": "MJOLD", "secret_key": "s" * 40, "region": "us-east-1"}
    credentials_file(tmp_path).write_text(json.dumps(old))
    creds = _home.ensure_credentials(tmp_path)
    assert {k: creds[k] for k in old} == old
    assert creds["reader_access_key"].startswith("MR")
    assert json.loads(credentials_file(tmp_path).read_text()) == creds


def test_terminate_stops_only_marked_process_and_its_group(tmp_path):
    # Two markers where one is a prefix of the other: matching must be exact.
    home, other_home = str(tmp_path / "a"), str(tmp_path / "ab")
    marker, other_marker = f"{stack_api.MARKER_VAR}={home}", f"{stack_api.MARKER_VAR}={other_home}"
    child_pid_file = tmp_path / "child.pid"
    # A leader that leaves a child in its process group, like `ray start --block`.
    ours = _host.spawn(["sh", "-c", f"sleep 60 & echo $! > {child_pid_file}; wait"],
                       {**os.environ, stack_api.MARKER_VAR: home}, tmp_path / "ours.log", cwd=tmp_path)
    theirs = _host.spawn(["sleep", "60"], {**os.environ, stack_api.MARKER_VAR: other_home},
                         tmp_path / "theirs.log", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not child_pid_file.exists() or not child_pid_file.read_text().strip():
            assert time.monotonic() < deadline, "the test's shell did not start its child"
            time.sleep(0.05)
        child = int(child_pid_file.read_text())
        # Until exec() completes, /proc/<pid>/environ still shows the parent's environment.
        while not _host.carries_marker(theirs.pid, other_marker):
            assert time.monotonic() < deadline, "the other process never showed its marker"
            time.sleep(0.05)
        assert _host.carries_marker(ours.pid, marker)
        assert not _host.carries_marker(theirs.pid, marker)
        assert _host.carries_marker(theirs.pid, other_marker)
        assert sorted(_host.marked_pids(marker)) == sorted([ours.pid, child])

        _host.terminate({ours.pid: 2.0})

        assert not _host.alive(ours.pid)
        assert not _host.carries_marker(ours.pid, marker)
        assert not _host.alive(child)
        assert _host.alive(theirs.pid)
    finally:
        for proc in (ours, theirs):  # whole groups, so a failing test leaks no `sleep`
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_commands_without_a_stack_are_harmless(tmp_path):
    home = tmp_path / "never-started"
    assert stack_api.down(home) == []
    assert stack_api.status(home).components == ()
    assert not stack_api.status(home).healthy
    with pytest.raises(StackError, match="no local stack under .*mediajobs local up"):
        stack_api.env_lines(home)
