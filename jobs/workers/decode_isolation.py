"""Decoding untrusted objects in child processes that a crash, a hang or a memory blow-up
cannot take the scoring actor with (the child itself: `tasks.decode_child`).

Each worker process keeps a few children per task (one per concurrent `fetch_and_decode`
call) and sends them the objects already fetched, a group at a time (one round trip);
the child answers object by object. The parent waits at most the decode budget plus a
grace period for each answer, then kills the child; a child that dies (a signal, the
address-space limit) is replaced. The object it died on is tried once more in a fresh
child, then becomes an errors row: stage `timeout` or `crash`, with the limit or the
signal.

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
from typing import Any, NamedTuple

from tasks.decode_child import DEFAULT_MEMORY_BYTES, LENGTH, MAX_HEADER_BYTES
from tasks.protocols import MediaDecoder

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


class Outcome(NamedTuple):
    """One object's decode: `decoded` (None when it failed), or `stage` and `reason`; and the
    seconds it took."""

    decoded: Any
    stage: str | None
    reason: str | None
    seconds: float


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
        assert self.process.stdin is not None and self.process.stdout is not None  # both are pipes
        self.requests, self.answers = self.process.stdin, self.process.stdout
        self.unread = bytearray()  # answers read from the pipe, not yet taken
        self.began = time.perf_counter()  # when the answer now awaited was asked for
        self._send(task_blob)

    def decode_group(self, sources: list, reads: str, seconds: float, example_shape,
                     dtype) -> tuple[list[Outcome], ChildLost | None]:
        """The answers for `sources`, in order; and, if the child died, hung or lied before
        answering them all, why (the object it was on is the first one without an answer).
        `example_shape` None: any shape (images at their own size; the child's decoder
        bounds their pixels)."""
        request = {"kind": reads, "seconds": seconds, "count": len(sources)}
        if reads != "bytes":
            request["paths"] = [str(source) for source in sources]
        try:
            self._send(json.dumps(request).encode())
            for source in sources:
                self._send(source if reads == "bytes" else b"")
        except (BrokenPipeError, OSError):
            return [], self._lost()
        answers: list[Outcome] = []
        for _ in sources:
            try:
                deadline = time.monotonic() + seconds + GRACE_SECONDS  # the child decodes one at a time
                self.began = time.perf_counter()
                header = json.loads(self._receive(deadline, MAX_HEADER_BYTES))
                data = self._receive(deadline, MAX_EXAMPLE_BYTES)
                answers.append(self._checked(header, data, example_shape, dtype))
            except ChildLost as lost:
                return answers, lost
            except ValueError as exc:  # a header that is no JSON: the child is not well
                return answers, ChildLost("crash", f"the decoder answered garbage ({exc})")
        return answers, None

    @classmethod
    def _checked(cls, header, data: bytes, example_shape, dtype) -> Outcome:
        """The answer as an Outcome; anything malformed (not a dict, a missing or odd field)
        is the child's fault: ChildLost, never an exception that would fail the batch."""
        try:
            return cls._outcome(header, data, example_shape, dtype)
        except (TypeError, KeyError, AttributeError, ValueError, OverflowError) as exc:
            raise ChildLost("crash", f"the decoder answered garbage ({type(exc).__name__})") from None

    @staticmethod
    def _outcome(header: dict, data: bytes, example_shape, dtype) -> Outcome:
        import numpy as np

        took = header.get("seconds")
        took = float(took) if isinstance(took, (int, float)) and 0 <= took < 1e6 else 0.0
        if not header.get("ok"):
            return Outcome(None, str(header.get("stage") or "decode"), str(header.get("reason") or "decode failed"),
                           took)
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
        info = header.get("info")
        if not isinstance(info, dict):
            info = {}
        warning = header.get("warning")
        return Outcome(Decoded(examples, positions, str(warning) if warning else None, info), None, None, took)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.requests, self.answers):
            try:
                stream.close()
            except OSError:
                pass
        import shutil

        shutil.rmtree(self.home, ignore_errors=True)

    def _send(self, data) -> None:
        self.requests.write(LENGTH.pack(len(data)))
        self.requests.write(data)
        self.requests.flush()

    def _receive(self, deadline: float, limit: int) -> bytes:
        (length,) = LENGTH.unpack(self._read(LENGTH.size, deadline))
        if length > limit:
            raise ChildLost("crash", f"the decoder answered {length:,} bytes (limit {limit:,})")
        return self._read(length, deadline)

    def _read(self, count: int, deadline: float) -> bytes:
        """`count` bytes of the answers, read as they arrive (a read takes all there is, so
        the answers to a group cost a few system calls, not four per object)."""
        fd = self.answers.fileno()
        while len(self.unread) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise ChildLost("timeout", "")  # the caller names the budget
            chunk = os.read(fd, min(max(count - len(self.unread), 1 << 20), 8 << 20))
            if not chunk:
                raise self._lost()
            self.unread += chunk
        data = bytes(self.unread[:count])
        del self.unread[:count]
        return data

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


def prestart(task: MediaDecoder, count: int) -> None:
    """Start `count` children for `task` in the background: a scoring actor calls this while
    it loads its model, so its first batch does not wait for Python and the decoders to
    start (about half a second a child)."""
    blob = task_blob(task)

    def start() -> None:
        for _ in range(count):
            _CHILDREN.give(blob, DecodeChild(blob))

    threading.Thread(target=start, name="mediajobs-decode-prestart", daemon=True).start()


def task_blob(task: MediaDecoder) -> bytes:
    """What a child is started with, and the key of its task's children (equal tasks share)."""
    return pickle.dumps(task)


def decode_isolated(task: MediaDecoder, blob: bytes, sources: list, seconds: float) -> list[Outcome]:
    """`task.decode` of each source in a child started with `blob` (`task_blob(task)`), in
    one round trip while nothing goes wrong: an Outcome per source.

    The object a child crashes or hangs on is tried once more in a fresh child (a transient
    failure, e.g. the node short of memory, passes then), with the objects after it; the
    second time it makes the errors row, and the others go on in another child.
    """
    results: list[Outcome | None] = [None] * len(sources)
    todo, tries = list(range(len(sources))), [0] * len(sources)
    while todo:
        child = _CHILDREN.take(blob)
        answers, lost = child.decode_group([sources[i] for i in todo], task.reads, seconds, task.example_shape,
                                           task.example_dtype)
        for i, answer in zip(todo, answers):
            results[i] = answer
        if lost is None:
            _CHILDREN.give(blob, child)
            break
        child.kill()
        culprit, todo = todo[len(answers)], todo[len(answers):]
        tries[culprit] += 1
        if tries[culprit] == 2:
            reason = (f"decoding took longer than the {seconds:g} s budget; the decoder was killed"
                      if lost.stage == "timeout" else lost.reason)
            results[culprit] = Outcome(None, lost.stage, reason, time.perf_counter() - child.began)
            todo = todo[1:]
    return results  # type: ignore[return-value]
