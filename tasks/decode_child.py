"""A decode child: the process where untrusted media bytes are parsed, apart from the actor.

FFmpeg, OpenCV, libsndfile and Pillow parse objects nobody checked. Run in the scoring
actor, a decoder that aborts takes the actor down, one stuck in C cannot be stopped, and
one that is exploited holds the actor's storage credentials. So each actor decodes in
children started with `python -m tasks.decode_child` (`jobs.workers.decode_isolation`): an
address-space limit set before the first object is read, no core dumps, an environment
without credentials or tokens, a private empty HOME, and a parent that kills it at the
decode budget.

The protocol runs over the child's stdin and stdout. The parent trusts the child's
answers no more than the media: they are a JSON header and raw array bytes, checked by
the parent, never a pickle. The parent's messages to the child are trusted (the task
object is pickled once at start). Objects go in groups, one round trip per group (a
round trip per object cost a fifth of the image throughput); answers come one object at
a time, so the parent knows which object a child died on or hung at.

    parent -> child   frame(pickle(task)); per group: frame(json request), one payload frame per object
    child -> parent   per object of the group, in order: frame(json header), frame(example bytes)

The child reads a whole group before it answers, so neither side can block the other
on a full pipe. A frame is an 8-byte big-endian length and the bytes.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time

LENGTH = struct.Struct("!Q")
MAX_HEADER_BYTES = 1 << 20  # a header is positions and info for at most a few thousand examples
DEFAULT_MEMORY_BYTES = 3 << 30
FAULT_PREFIX = b"MEDIAJOBS-FAULT:"  # test hook, only with MEDIAJOBS_DECODE_FAULTS=1 (see `_injected_fault`)


def write_frame(stream, data) -> None:
    stream.write(LENGTH.pack(len(data)))
    stream.write(data)


def read_frame(stream, limit: int | None = None) -> bytes | None:
    """The next frame's bytes; None at a clean end of the stream."""
    head = stream.read(LENGTH.size)
    if not head:
        return None
    if len(head) < LENGTH.size:
        raise EOFError("the stream ended inside a frame header")
    (length,) = LENGTH.unpack(head)
    if limit is not None and length > limit:
        raise ValueError(f"frame of {length} bytes is over the limit of {limit}")
    data = stream.read(length)
    if len(data) < length:
        raise EOFError("the stream ended inside a frame")
    return data


def _jsonable(value):
    """numpy scalars in positions and info (json cannot write np.int64)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _injected_fault(source) -> None:
    """Test hook: with MEDIAJOBS_DECODE_FAULTS=1, an object starting with
    `MEDIAJOBS-FAULT:abort` aborts this process and `MEDIAJOBS-FAULT:hang` blocks in C,
    standing in for decoders that do so on a poisoned file; `MEDIAJOBS-FAULT:alloc` asks for
    more memory than the limit allows; `MEDIAJOBS-FAULT:environ` is
    refused with what this process can see (its environment, arguments, open files and
    HOME), for tests that look for secrets from inside."""
    if os.environ.get("MEDIAJOBS_DECODE_FAULTS") != "1":
        return
    if isinstance(source, str):
        with open(source, "rb") as handle:
            head = handle.read(64)
    else:
        head = bytes(source[:64])
    if head.startswith(FAULT_PREFIX + b"abort"):
        os.abort()
    if head.startswith(FAULT_PREFIX + b"hang"):
        import ctypes

        ctypes.CDLL(None).sleep(1_000_000)  # in C: no Python-level timeout reaches it
    if head.startswith(FAULT_PREFIX + b"alloc"):  # 10% past the address-space limit, untouched
        import numpy as np

        np.empty(int(int(os.environ.get("MEDIAJOBS_DECODE_MEMORY_BYTES", DEFAULT_MEMORY_BYTES)) * 1.1), np.uint8)
        raise RuntimeError("allocated past the address-space limit")
    if head.startswith(FAULT_PREFIX + b"environ"):
        from tasks.media import MediaDecodeError

        seen = {"env": dict(os.environ), "argv": sys.argv, "cwd": os.getcwd(),
                "fds": {fd: _link(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")},
                "home": sorted(os.listdir(os.environ.get("HOME", "/nonexistent") or "/nonexistent"))}
        raise MediaDecodeError("environ " + json.dumps(seen))


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _answer(task, source, seconds: float) -> tuple[dict, bytes]:
    import numpy as np

    from tasks.media import MediaDecodeError

    try:
        _injected_fault(source)
        decoded = task.decode(source, deadline=time.monotonic() + seconds)
    except MediaDecodeError as exc:
        return {"ok": False, "stage": exc.stage, "reason": exc.reason}, b""
    except MemoryError:
        limit = int(os.environ.get("MEDIAJOBS_DECODE_MEMORY_BYTES", DEFAULT_MEMORY_BYTES))
        return {"ok": False, "stage": "crash",
                "reason": f"out of memory: decoding needed more than the decoder's {limit / 2**30:g} GiB"}, b""
    except Exception as exc:  # noqa: BLE001 - an exotic file is recorded, the child goes on
        return {"ok": False, "stage": "decode", "reason": f"{type(exc).__name__}: {exc}"}, b""
    examples = np.ascontiguousarray(decoded.examples)
    header = {"ok": True, "dtype": examples.dtype.str, "shape": list(examples.shape),
              "positions": list(decoded.positions), "info": getattr(decoded, "info", None) or {},
              "warning": decoded.warning}
    return header, examples.tobytes()


def _one_thread_per_child() -> None:
    """OpenCV's resize and colour conversions start a thread per core by default. A child
    decodes one object at a time, and an actor's children decode side by side, so those
    pools only fought each other for the cores (measured on the bench's images: isolated
    scoring at 0.93x of in-process decoding with OpenCV's pools, 0.95x with one thread)."""
    environment = dict(os.environ)
    try:
        import cv2
    except ImportError:
        return
    finally:
        # OpenCV's loader adds its own library folder to LD_LIBRARY_PATH; the loader read it
        # already, and the child's environment stays the short list it was started with.
        for name in set(os.environ) - set(environment):
            del os.environ[name]
    cv2.setNumThreads(1)


def main() -> None:
    import pickle
    import resource

    limit = int(os.environ.get("MEDIAJOBS_DECODE_MEMORY_BYTES", DEFAULT_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crashing decoder writes no core file
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a decoder's stray print must not corrupt the protocol
    _one_thread_per_child()
    frame = read_frame(requests)
    if frame is None:
        return  # the parent closed the pipe before it sent the task
    task = pickle.loads(frame)
    while True:
        request = read_frame(requests)
        if request is None:
            return  # the parent closed the pipe: done
        request = json.loads(request)
        payloads = [read_frame(requests) for _ in range(request["count"])]
        sources = payloads if request["kind"] == "bytes" else request["paths"]
        for source in sources:
            began = time.perf_counter()
            header, data = _answer(task, source, request["seconds"])
            header["seconds"] = time.perf_counter() - began  # this object's own, for the slowest-objects list
            write_frame(answers, json.dumps(header, default=_jsonable).encode())
            write_frame(answers, data)
            answers.flush()


if __name__ == "__main__":
    main()
