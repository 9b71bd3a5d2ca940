"""Decoding untrusted objects in child processes that a crash, a hang or a memory blow-up
cannot take the scoring actor with (the child itself: `tasks.decode_child`).

Each worker process keeps a few children per task (one per concurrent `fetch_and_decode`
call) and sends them one object at a time. The parent waits at most the decode budget
plus a grace period, then kills the child; a child that dies (a signal, the address-space
limit) is replaced. The object is tried once more in a fresh child, then becomes an errors
row: stage `timeout` or `crash`, with the limit or the signal.

What a child answers is checked here like any untrusted input: sizes are bounded, the
array must have the task's dtype and example shape, and nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tasks.decode_child import DEFAULT_MEMORY_BYTES, LENGTH, MAX_HEADER_BYTES

# What a child's environment keeps: enough to run Python and the decoders, nothing that
# names a credential (AWS_*, RAY_* tokens, MEDIAJOBS_S3_*, cloud metadata settings).
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "VIRTUAL_ENV", "TF_USE_LEGACY_KERAS",
              "OMP_NUM_THREADS", "MEDIAJOBS_DECODE_FAULTS", "MEDIAJOBS_DECODE_MEMORY_BYTES", "MEDIAJOBS_MAX_PIXELS")
GRACE_SECONDS = 5.0  # beyond the cooperative budget, before the kill
MAX_EXAMPLE_BYTES = 2 << 30  # an answer larger than this is a lie or a bomb


def memory_limit() -> int:
    return int(os.environ.get("MEDIAJOBS_DECODE_MEMORY_BYTES", DEFAULT_MEMORY_BYTES))


class ChildLost(Exception):
    """The child did not answer: it was killed at the budget (`timeout`) or died (`crash`)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.reason = stage, reason


@dataclass
class Decoded:
    """A child's answer, checked: what `task.decode` returned, as plain data."""

    examples: Any
    positions: list[dict] = field(default_factory=list)
    warning: str | None = None
    info: dict = field(default_factory=dict)


class DecodeChild:
    """One child process decoding for one task."""

    def __init__(self, task_blob: bytes) -> None:
        self.home = tempfile.mkdtemp(prefix="mediajobs-decode-")
        env = {name: os.environ[name] for name in _CHILD_ENV if name in os.environ}
        env.update(HOME=self.home, TMPDIR=self.home, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.process = subprocess.Popen([sys.executable, "-m", "tasks.decode_child"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, cwd=self.home, close_fds=True)
        self._send(task_blob)

    def decode(self, source: Any, reads: str, seconds: float, example_shape, dtype) -> Decoded:
        """`example_shape` None: any shape (images at their own size; the child's decoder
        bounds their pixels). Raises ChildLost, or DecodeRefused with the decoder's reason."""
        import numpy as np

        request = {"kind": "bytes", "seconds": seconds} if reads == "bytes" else \
            {"kind": "path", "path": source, "seconds": seconds}
        try:
            self._send(json.dumps(request).encode())
            self._send(source if reads == "bytes" else b"")
        except (BrokenPipeError, OSError):
            raise self._lost() from None
        deadline = time.monotonic() + seconds + GRACE_SECONDS
        header = json.loads(self._receive(deadline, MAX_HEADER_BYTES))
        data = self._receive(deadline, MAX_EXAMPLE_BYTES)
        if not header.get("ok"):
            raise DecodeRefused(str(header.get("stage") or "decode"), str(header.get("reason") or "decode failed"))
        shape, expected = tuple(int(v) for v in header["shape"]), np.dtype(dtype)
        wanted = "(n, " + ", ".join(map(str, example_shape)) + ")" if example_shape is not None else "(n, ...)"
        if (np.dtype(header["dtype"]) != expected or len(data) != int(np.prod(shape)) * expected.itemsize
                or (example_shape is not None and shape[1:] != tuple(example_shape)) or not shape):
            raise ChildLost("crash", f"the decoder answered an array of {header['dtype']} {shape}, not "
                                     f"{expected} {wanted}")
        positions = header.get("positions") or []
        if len(positions) != shape[0] or not all(isinstance(p, dict) for p in positions):
            raise ChildLost("crash", "the decoder answered positions that do not match its examples")
        examples = np.frombuffer(data, dtype=expected).reshape(shape)
        info = header.get("info") if isinstance(header.get("info"), dict) else {}
        warning = header.get("warning")
        return Decoded(examples, positions, str(warning) if warning else None, info)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        import shutil

        shutil.rmtree(self.home, ignore_errors=True)

    def _send(self, data) -> None:
        self.process.stdin.write(LENGTH.pack(len(data)))
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def _receive(self, deadline: float, limit: int) -> bytes:
        (length,) = LENGTH.unpack(self._read(LENGTH.size, deadline))
        if length > limit:
            raise ChildLost("crash", f"the decoder answered {length:,} bytes (limit {limit:,})")
        return self._read(length, deadline)

    def _read(self, count: int, deadline: float) -> bytes:
        fd, chunks, left = self.process.stdout.fileno(), [], count
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise ChildLost("timeout", "")  # the caller names the budget
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise self._lost()
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _lost(self) -> ChildLost:
        try:
            code = self.process.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # it closed its answers but lives on: end it
            self.process.kill()
            code = self.process.wait()
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            how = f"killed by signal {name}"
        else:
            how = f"exited with code {code}"
        return ChildLost("crash", f"the decoder crashed ({how}; its limit is {memory_limit() / 2**30:g} GiB of "
                                  "address space)")


class DecodeRefused(Exception):
    """The child decoded nothing and said why (a MediaDecodeError, or another exception)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage, self.reason = stage, reason


class _Children:
    """Idle children per task, per worker process; a call takes one and gives it back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[bytes, list[DecodeChild]] = {}

    def take(self, blob: bytes) -> DecodeChild:
        with self.lock:
            free = self.idle.setdefault(blob, [])
            if free:
                return free.pop()
        return DecodeChild(blob)

    def give(self, blob: bytes, child: DecodeChild) -> None:
        with self.lock:
            self.idle.setdefault(blob, []).append(child)


_CHILDREN = _Children()


def task_blob(task: Any) -> bytes:
    """What a child is started with, and the key of its task's children (equal tasks share)."""
    return pickle.dumps(task)


def decode_isolated(task: Any, blob: bytes, source: Any, seconds: float):
    """(Decoded, None, None) or (None, stage, reason): `task.decode(source)` in a child
    started with `blob` (`task_blob(task)`).

    A crash or a timeout is tried once more in a fresh child (a transient failure, e.g. the
    node short of memory, passes then); the second makes the errors row.
    """
    lost: ChildLost | None = None
    for _ in range(2):
        child = _CHILDREN.take(blob)
        try:
            decoded = child.decode(source, task.reads, seconds, task.example_shape, task.example_dtype)
        except DecodeRefused as refused:
            _CHILDREN.give(blob, child)
            return None, refused.stage, refused.reason
        except ChildLost as exc:
            child.kill()
            lost = exc
            continue
        _CHILDREN.give(blob, child)
        return decoded, None, None
    assert lost is not None
    if lost.stage == "timeout":
        return None, "timeout", f"decoding took longer than the {seconds:g} s budget; the decoder was killed"
    return None, lost.stage, lost.reason
