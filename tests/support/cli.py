"""The `mediajobs` CLI run as a user runs it: `python -m jobs.cli.app ...` in a process of its
own, from this checkout, with the test's environment (the `mediajobs_cli` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Mapping, Sequence

from support.paths import ROOT, python_path


class MediaJobsCli:
    """Runs the CLI in a child process. The environment is read at call time, so a run inside
    a test of the integration tier sees the session stack's settings (`local_stack`)."""

    command = (sys.executable, "-m", "jobs.cli.app")

    def env(self, extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with `extra` on top; PYTHONPATH names
        this checkout, so the child runs the code under test, not an editable install's."""
        return {**(os.environ if base is None else base), "PYTHONPATH": python_path(), **(extra or {})}

    def __call__(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 600,
                 merge_output: bool = False) -> subprocess.CompletedProcess:
        """Run `mediajobs *args` to its end.

        Args:
            args: the command line after `mediajobs`.
            env: the child's whole environment (PYTHONPATH is set on it); default: this process's.
            timeout: seconds before the run is killed (subprocess.TimeoutExpired).
            merge_output: stderr into stdout, in the order written (`stderr` is then None).

        Returns:
            The finished process: `returncode`, `stdout`, `stderr` (text).
        """
        return subprocess.run([*self.command, *args], cwd=ROOT, env=self.env(base=env), text=True, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_output else subprocess.PIPE)

    def start(self, *args: str, env: Mapping[str, str] | None = None, **popen) -> subprocess.Popen:
        """Start `mediajobs *args` and return at once, for tests that watch or kill a run midway.
        `popen`: further subprocess.Popen arguments (stdout, start_new_session, ...)."""
        return subprocess.Popen([*self.command, *args], cwd=ROOT, env=self.env(base=env), **popen)


class RunsAhead:
    """Many cases' CLI runs, each case's run started while the case before it is checked: two
    processes at once, each mostly Python starting up. `runs(case)` is the finished process of
    `mediajobs *command_lines[case]`; cases are best asked for in the order given."""

    def __init__(self, cli: MediaJobsCli, command_lines: Mapping[str, Sequence[str]], **call) -> None:
        self._cli, self._lines, self._call = cli, dict(command_lines), call
        self._order = list(self._lines)
        self._pool = ThreadPoolExecutor(2)
        self._started: dict[str, Future] = {}

    def __call__(self, case: str) -> subprocess.CompletedProcess:
        at = self._order.index(case)
        for name in self._order[at:at + 2]:
            if name not in self._started:
                self._started[name] = self._pool.submit(self._cli, *self._lines[name], **self._call)
        return self._started.pop(case).result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)
