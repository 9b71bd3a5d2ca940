"""The fetch-and-decode stage shared by training and scoring pipelines.

Runs inside Ray Data `map_batches` tasks. Each object is fetched and decoded on its
own, so one bad object becomes an error row (`stage`, `error`) instead of failing the
block: every listed object comes out of this stage, as one row per decoded example
(an image, a sampled video frame, an audio window) or as one error row.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from jobs.workers.metrics import OBJECT_DECODE_SECONDS, OBJECT_FETCH_SECONDS, observe_all

if TYPE_CHECKING:
    from tasks.protocols import Decoder, MediaDecoder

# Objects larger than this are refused before download: reading it would starve a
# worker of memory (bytes tasks) or disk (file tasks).
MAX_OBJECT_BYTES = {"bytes": 256 * 1024 * 1024, "file": 16 * 1024 * 1024 * 1024}
# Object fetches are I/O bound: overlap them within a batch.
FETCH_THREADS = 16
# A per-object decode budget (`MEDIAJOBS_DECODE_SECONDS`): the decoder is told, and a
# decoder that does not stop by then is killed (`jobs.workers.decode_isolation`).
DECODE_SECONDS = 300.0
# Fetched bytes a worker process holds at once, whatever the block size
# (`MEDIAJOBS_FETCH_BUDGET_BYTES`): 256 objects of 200 MiB each must not be 50 GiB of RAM.
FETCH_BUDGET_BYTES = 512 * 1024 * 1024
# Objects a decode child takes in one round trip: images already fetched, up to 16; a
# video or audio file (read from a spool file, decoded for long) alone.
DECODE_GROUP = {"bytes": 16, "file": 1}
EXAMPLE = "example"


def decode_seconds() -> float:
    return float(os.environ.get("MEDIAJOBS_DECODE_SECONDS", DECODE_SECONDS))


def isolation_enabled() -> bool:
    """Decode in child processes (the default); `MEDIAJOBS_DECODE_ISOLATION=0` decodes in the
    worker itself, as before (the benchmark compares the two)."""
    return os.environ.get("MEDIAJOBS_DECODE_ISOLATION", "1") != "0"


def fetch_object(uri: str, size: int, reads: str, spool_dir: str) -> tuple[Any, str | None]:
    """The object's bytes, or (reads == "file") a local temp copy of it, streamed.

    A store that does not answer is waited out (`retry_while_unavailable`); past the
    budget `StoreUnavailableError` fails the job, as the object itself is not at fault.
    """
    from jobs.errors import StorageError
    from jobs.storage.objects import copy_to_file, describe_storage_error, parse_uri, read_sized
    from jobs.storage.outage import StoreUnavailableError, retry_while_unavailable

    limit = MAX_OBJECT_BYTES[reads]
    if size > limit:
        return None, f"object too large: {size:,} bytes (limit {limit:,})"
    try:
        if reads == "bytes":
            return retry_while_unavailable(lambda: read_sized(uri, size), f"reading {uri}"), None
        location = parse_uri(uri)
        if location.scheme == "file":
            return location.key, None
        suffix = os.path.splitext(location.key)[1][:16]
        handle, path = tempfile.mkstemp(suffix=suffix, dir=spool_dir)
        os.close(handle)

        def copy() -> None:
            with open(path, "wb") as local:  # "wb" again on a retry: no half copy left in front
                copy_to_file(uri, local)

        retry_while_unavailable(copy, f"reading {uri}")
        return path, None
    except StoreUnavailableError:
        raise
    # pyarrow raises OSError subclasses for missing/denied/network; jobs.storage.objects raises
    # StorageError where it reads through boto3 (keys pyarrow cannot address).
    except (OSError, StorageError) as exc:
        return None, describe_storage_error(exc)


class _ByteBudget:
    """The fetched bytes a worker process holds, across its concurrent calls. An object
    larger than the whole budget is fetched when nothing else is held."""

    def __init__(self) -> None:
        self.held = 0
        self.changed = threading.Condition()

    def try_take(self, size: int, limit: int) -> bool:
        with self.changed:
            if self.held and self.held + size > limit:
                return False
            self.held += size
            return True

    def take(self, size: int, limit: int) -> None:
        with self.changed:
            self.changed.wait_for(lambda: not self.held or self.held + size <= limit)
            self.held += size

    def give(self, size: int) -> None:
        with self.changed:
            self.held -= size
            self.changed.notify_all()


_BUDGET = _ByteBudget()


def give_back(held: int) -> None:
    """Objects from `fetched_in_order` are done with: their bytes leave the budget."""
    _BUDGET.give(held)


def fetched_in_order(uris: list[str], sizes: list[int], reads: str, spool_dir: str, group: int = 1):
    """Groups of fetched objects, in input order: lists of ((source, error, seconds), bytes
    held), fetched ahead in the fetch pool while the bytes held stay within the budget. A
    group is the oldest object plus up to `group - 1` more that are already fetched. The
    caller gives each group's bytes back (`give_back`) once it has decoded it, before it
    asks for the next; on an early exit the rest are given back here."""
    limit = int(os.environ.get("MEDIAJOBS_FETCH_BUDGET_BYTES", FETCH_BUDGET_BYTES))
    pending: collections.deque = collections.deque()

    def ready() -> list:
        taken: list[tuple[Any, int]] = []  # (result, bytes held)
        while pending and (not taken or (len(taken) < group and pending[0][0].done())):
            future, held = pending[0]
            result = future.result()  # a store outage raises here; `finally` gives its bytes back
            pending.popleft()
            taken.append((result, held))
        return taken

    try:
        for uri, size in zip(uris, sizes):
            while pending and not _BUDGET.try_take(size, limit):
                yield ready()
            if not pending:  # the caller holds nothing now: waiting cannot block on ourselves
                _BUDGET.take(size, limit)  # another call holds the budget: wait for it
            pending.append((_fetch_pool().submit(_timed_fetch, uri, size, reads, spool_dir), size))
        while pending:
            yield ready()
    finally:
        for future, held in pending:  # not handed out: the caller stopped early
            future.cancel()
            _BUDGET.give(held)


@functools.lru_cache(maxsize=1)
def _fetch_pool() -> ThreadPoolExecutor:
    """One fetch pool per worker process, kept across batches (starting threads per batch
    showed up in profiles)."""
    return ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="mediajobs-fetch")


def _timed_fetch(uri: str, size: int, reads: str, spool_dir: str) -> tuple[Any, str | None, float]:
    began = time.perf_counter()
    source, error = fetch_object(uri, size, reads, spool_dir)
    return source, error, time.perf_counter() - began


def decode_all(task: MediaDecoder, blob: bytes | None, sources: list) -> list:
    """An `Outcome` (decoded, stage, reason, seconds) per source; in a decode child when
    `blob` is set (`jobs.workers.decode_isolation`), else here."""
    if blob is not None:
        from jobs.workers.decode_isolation import decode_isolated

        return decode_isolated(task, blob, sources, decode_seconds())
    return [_decode_here(task, source) for source in sources]


def _decode_here(task: MediaDecoder, source: Any):
    from jobs.workers.decode_isolation import Outcome
    from tasks.media import MediaDecodeError

    if isinstance(source, bytearray):
        source = bytes(source)  # decoders take bytes (a decode child receives bytes too)
    began = time.perf_counter()
    try:
        decoded = task.decode(source, deadline=time.monotonic() + decode_seconds())
        return Outcome(decoded, None, None, time.perf_counter() - began)
    except MediaDecodeError as exc:
        return Outcome(None, exc.stage, exc.reason, time.perf_counter() - began)
    except Exception as exc:  # noqa: BLE001 - an exotic file must not kill the job; it is recorded
        return Outcome(None, "decode", f"{type(exc).__name__}: {exc}", time.perf_counter() - began)


def fetch_and_decode(batch: dict[str, np.ndarray], *, task: Decoder, keep_errors: bool,
                     isolate: bool | None = None) -> dict[str, np.ndarray]:
    """Fetch and decode each `uri` in the batch with `task.decode`.

    Output: one row per decoded example with the input columns repeated (e.g. `label`),
    `example` (task.example_shape), the task's position columns and `object_info`
    (JSON). With `keep_errors`, also `stage` and `error` string columns: "" on example
    rows; an object that failed gets one row with a zero example, and an object that
    decoded only partly (e.g. a truncated video) gets its examples plus one row with
    stage "decode-partial". Without `keep_errors` failed objects are dropped (training).
    Strings rather than None: Ray's block conversions may turn an all-None object
    column into NaN floats. `isolate`: decode in child processes (None: `isolation_enabled()`
    where this runs; runners pass the driver's setting).
    """
    uris = [str(u) for u in batch["uri"]]
    sizes = [int(s) for s in batch["size"]] if "size" in batch else [0] * len(uris)
    passthrough = {name: values for name, values in batch.items() if name not in ("uri", "size")}
    blob = None
    if isolation_enabled() if isolate is None else isolate:
        from jobs.workers.decode_isolation import task_blob

        blob = task_blob(task)
    rows = _decoded_rows(task, blob, uris, sizes)
    if not keep_errors:
        rows = [r for r in rows if not r[4]]
    return _batch_columns(task, rows, uris, passthrough, keep_errors)


# One output row: (input index, example, position, object_info JSON, stage, error); stage and
# error are "" on an example row.
_Row = tuple[int, Any, dict, str, str, str]


def _decoded_rows(task: Decoder, blob: bytes | None, uris: list[str], sizes: list[int]) -> list[_Row]:
    """Every object's rows, in input order: its examples, or one error row (its stage and reason)."""
    zero = np.zeros(task.example_shape, dtype=task.example_dtype)
    rows: list[_Row] = []
    fetch_times: list[float] = []
    decode_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mediajobs-spool-") as spool_dir:
        next_input = 0
        for fetches, outcomes in _decoded_groups(task, blob, uris, sizes, spool_dir):
            # Each object's fetch + decode seconds ride in object_info: reports name the slowest objects.
            for fetch_error, fetch_seconds in fetches:
                i, next_input = next_input, next_input + 1
                fetch_times.append(fetch_seconds)
                if fetch_error is not None:
                    rows.append((i, zero, {}, json.dumps({"seconds": round(fetch_seconds, 4)}), "read", fetch_error))
                else:
                    outcome = next(outcomes)
                    decode_times.append(outcome[3])
                    rows.extend(_object_rows(i, outcome, fetch_seconds, zero))
    observe_all(OBJECT_FETCH_SECONDS, fetch_times, task=task.name)
    observe_all(OBJECT_DECODE_SECONDS, decode_times, task=task.name)
    return rows


def _decoded_groups(task: Decoder, blob: bytes | None, uris: list[str], sizes: list[int],
                    spool_dir: str) -> Iterator[tuple[list[tuple[str | None, float]], Iterator[Any]]]:
    """Per group of objects: each one's (fetch error, fetch seconds), and an iterator over the
    decode outcomes of those fetched. A group's fetched bytes are dropped, its budget given back
    and its spool files removed before it is yielded."""
    # Lazily, in input order: object i is decoded while later ones are still being
    # fetched, so the CPU decodes during the network waits instead of after them.
    # Decoded a group at a time (one round trip to the decode child for the images
    # already fetched; a video alone), in input order.
    for group in fetched_in_order(uris, sizes, task.reads, spool_dir, DECODE_GROUP[task.reads]):
        fetches = [(error, seconds) for (_, error, seconds), _ in group]
        sources = [source for (source, error, _), _ in group if error is None]
        spooled = [s for s in sources if task.reads == "file" and str(s).startswith(spool_dir)]
        held = sum(held for _, held in group)
        del group  # from here on only `sources` holds the fetched bytes
        try:
            decoded_all = iter(decode_all(task, blob, sources))
        finally:
            del sources  # the fetched bytes go now, not when the next group's replace them
            give_back(held)
            for path in spooled:
                os.unlink(path)  # free the disk as soon as the object is decoded
        yield fetches, decoded_all


def _object_rows(i: int, outcome: Any, fetch_seconds: float, zero: np.ndarray) -> list[_Row]:
    """The rows of input `i`, fetched: one per decoded example, plus one when it decoded to
    nothing or only partly; a failed decode is one error row."""
    decoded, stage, reason, took = outcome
    seconds = round(fetch_seconds + took, 4)
    if decoded is None:
        return [(i, zero, {}, json.dumps({"seconds": seconds}), stage, reason)]
    info = json.dumps({**(getattr(decoded, "info", None) or {}), "seconds": seconds})
    rows: list[_Row] = [(i, example, position, info, "", "")
                        for example, position in zip(decoded.examples, decoded.positions)]
    if len(decoded.examples) == 0:
        rows.append((i, zero, {}, info, "decode", "no examples decoded"))
    elif decoded.warning:
        rows.append((i, zero, {}, info, "decode-partial", decoded.warning))
    return rows


def _batch_columns(task: Decoder, rows: list[_Row], uris: list[str], passthrough: dict[str, Any],
                   keep_errors: bool) -> dict[str, np.ndarray]:
    """The output batch: the rows as columns, the input columns repeated on each row."""
    index = np.array([r[0] for r in rows], dtype=np.int64)
    out: dict[str, np.ndarray] = {"uri": np.array([uris[i] for i in index], dtype=object)}
    out.update({name: np.asarray(values)[index] for name, values in passthrough.items()})
    out[EXAMPLE] = (np.stack([r[1] for r in rows]) if rows
                    else np.zeros((0, *task.example_shape), dtype=task.example_dtype))
    for column in task.position_columns:
        integer = column.endswith("_index")
        values = [r[2].get(column, -1 if integer else math.nan) for r in rows]
        out[column] = np.array(values, dtype=np.int64 if integer else np.float64)
    out["object_info"] = np.array([r[3] for r in rows], dtype=object)
    if keep_errors:
        out["stage"] = np.array([r[4] for r in rows], dtype=object)
        out["error"] = np.array([r[5] for r in rows], dtype=object)
    return out
