"""The scoring ledger of an incremental score job: one row per input object ever scored.

Layout under `<output>/_manifest/`:

    CURRENT                                   the name of the current snapshot (written last,
                                              only over the version the run read: the commit
                                              point), then the run that wrote it
    snapshot-<date>-<run_id>/index.json       its parts in key order (file, first/last key,
                                              rows) and what the run stored with them (the
                                              committed run dates)
    snapshot-<date>-<run_id>/part-00000.parquet ...

A snapshot is the whole ledger sorted by object URI, cut into parts of at most
`PART_ROWS` rows. Writing a new snapshot and then `CURRENT` makes a run's ledger update
one atomic switch; a crash before it leaves the previous snapshot current. `CURRENT` is
written only if it is still the version the run read while it held the output's lease
(`jobs.storage.pointer`), and a run that takes a lease over rewrites it (`fence_current`):
a run that lost its lease cannot commit. A snapshot is
written as a stream (memory for one row group): at 10 million objects, some hundreds of MB of
Parquet per run.

Both the listing of the input (S3 lists in key order) and a snapshot are sorted, so
`decide` merge-joins them in one pass with memory for one listing page and one part,
whatever the archive's size.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace

from jobs.errors import MediaJobsError
from jobs.storage.objects import (
    StoredObject,
    delete_prefix,
    filesystem_for,
    list_objects,
    parse_uri,
    read_bytes,
    write_bytes,
)
from jobs.storage.pointer import read_pointer, write_pointer

__all__ = ["Decision", "GROUP_ROWS", "LedgerEntry", "MANIFEST_DIR", "PART_ROWS", "current_snapshot", "decide",
           "deleted_entry",
           "fence_current", "ledger_schema", "merge_ledger", "prune_snapshots", "read_current", "read_ledger",
           "restored_entry", "snapshot_index", "write_snapshot"]

MANIFEST_DIR = "_manifest"
CURRENT = "CURRENT"
PART_ROWS = 1_000_000  # ~40-60 MB of Parquet per part
GROUP_ROWS = 16_384  # entries a snapshot's writer holds (as Python objects) before it writes them
KEEP_SNAPSHOTS = 7  # the ledger of the last week's runs stays readable

# Why an object is (not) scored in a run.
NEW, CHANGED, OTHER_MODEL, RETRY, UNCHANGED = "new", "changed", "other-model", "retry", "unchanged"
DELETED, RESTORED = "deleted", "restored"  # gone from the listing; back, as it was when deleted
# Outcomes of an object in the ledger.
PREDICTED, ERROR, SKIPPED = "predicted", "error", "skipped"
# Failure stages worth another try on the next run: the object may be fine, the read was not.
RETRIED_STAGES = ("read",)


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows of one object: its identity when last seen, the run that last
    scored (or skipped) it, the outcome, and whether it has been deleted since."""

    uri: str
    etag: str
    size: int
    model_id: str
    run_id: str
    run_date: str  # the partition holding its prediction, error or skipped row
    outcome: str  # predicted | error | skipped
    stage: str = ""  # for errors: the stage that failed; for skipped objects: why
    deleted_on: str = ""  # the run date that found it gone; "" while it is listed


def ledger_schema():
    import pyarrow as pa

    return pa.schema([("uri", pa.string()), ("etag", pa.string()), ("size", pa.int64()), ("model_id", pa.string()),
                      ("run_id", pa.string()), ("run_date", pa.string()), ("outcome", pa.string()),
                      ("stage", pa.string()), ("deleted_on", pa.string())])


@dataclass(frozen=True)
class Decision:
    """One object of a run: `score` says whether to score it, `reason` why (see the constants)."""

    uri: str
    reason: str
    listed: StoredObject | None
    known: LedgerEntry | None

    @property
    def score(self) -> bool:
        return self.reason in (NEW, CHANGED, OTHER_MODEL, RETRY)


def _pointer_uri(output_uri: str) -> str:
    return parse_uri(output_uri).as_prefix().join(MANIFEST_DIR, CURRENT).uri


def read_current(output_uri: str) -> tuple[str | None, str | None]:
    """(the current snapshot's URI, the version of `CURRENT` read); (None, None) before the
    first committed run. Pass the version to `write_snapshot`."""
    pointer = read_pointer(_pointer_uri(output_uri))
    if pointer is None:
        return None, None
    name = pointer[0].decode().split()[0]
    return parse_uri(output_uri).as_prefix().join(MANIFEST_DIR, name).uri, pointer[1]


def current_snapshot(output_uri: str) -> str | None:
    """The URI of the current snapshot folder, or None before the first committed run."""
    return read_current(output_uri)[0]


def fence_current(output_uri: str, run_id: str) -> None:
    """After taking the output's lease over: write `CURRENT` again (the same snapshot, this
    run's name), so that a stalled run's commit, conditional on the version it read, fails."""
    pointer = read_pointer(_pointer_uri(output_uri))
    if pointer is not None:
        name = pointer[0].decode().split()[0]
        write_pointer(_pointer_uri(output_uri), f"{name}\nfenced-by {run_id}\n".encode(), pointer[1])


def snapshot_index(snapshot_uri: str | None) -> dict:
    """The snapshot's index.json (its parts and what the run stored with them); {} for no snapshot."""
    if snapshot_uri is None:
        return {}
    return json.loads(read_bytes(parse_uri(snapshot_uri).join("index.json").uri))


def _index(snapshot_uri: str) -> list[dict]:
    return snapshot_index(snapshot_uri)["parts"]


def read_ledger(snapshot_uri: str | None, batch_rows: int = GROUP_ROWS) -> Iterator[LedgerEntry]:
    """The ledger's entries in key order, streamed part by part, batch by batch."""
    import pyarrow.parquet as pq

    if snapshot_uri is None:
        return
    location = parse_uri(snapshot_uri)
    fs = filesystem_for(location)
    for part in _index(snapshot_uri):
        with fs.open_input_file(location.join(part["file"]).fs_path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows):
                for row in batch.to_pylist():
                    yield LedgerEntry(**row)


def _check_order(previous: str | None, current: str, what: str) -> None:
    if previous is not None and current <= previous:
        raise MediaJobsError(f"{what} is not in key order ({current!r} after {previous!r}); the manifest merge "
                             "needs sorted keys")


def decide(listing: Iterable[StoredObject], ledger: Iterable[LedgerEntry],
             model_id: str | Callable[[str], str | None]) -> Iterator[Decision]:
    """Merge-join a sorted listing with the sorted ledger: one decision per object in either.

    Listed and unknown: new. Known with another ETag or size: changed. Known with the same
    identity but scored by another model (or skipped before, and a model takes it now):
    other-model. Failed last time at a stage worth a retry (a read): retry. Otherwise
    unchanged. Known but no longer listed: deleted (already-deleted entries are passed over).
    Deleted and listed again as it was: restored (its rows from before still stand).

    `model_id` is the model that scores an object now: one id for every object, or a
    function of the URI (mixed archives route by media), None when no model takes it.
    """
    model_for = model_id if callable(model_id) else (lambda uri: model_id)
    listed_iter, known_iter = iter(listing), iter(ledger)
    obj, entry = next(listed_iter, None), next(known_iter, None)
    last_listed: str | None = None
    last_known: str | None = None
    while obj is not None or entry is not None:
        if obj is not None:
            _check_order(last_listed, obj.uri, "the input listing")
        if entry is not None:
            _check_order(last_known, entry.uri, "the manifest")
        if entry is None or (obj is not None and obj.uri < entry.uri):
            assert obj is not None  # the loop runs while either is left
            yield Decision(obj.uri, NEW, obj, None)
            last_listed, obj = obj.uri, next(listed_iter, None)
        elif obj is None or entry.uri < obj.uri:
            if not entry.deleted_on:
                yield Decision(entry.uri, DELETED, None, entry)
            last_known, entry = entry.uri, next(known_iter, None)
        else:
            yield Decision(obj.uri, _reason(obj, entry, model_for(obj.uri)), obj, entry)
            last_listed, obj = obj.uri, next(listed_iter, None)
            last_known, entry = entry.uri, next(known_iter, None)


def _reason(obj: StoredObject, entry: LedgerEntry, model_id: str | None) -> str:
    reason = _reason_listed(obj, entry, model_id)
    return RESTORED if reason == UNCHANGED and entry.deleted_on else reason


def _reason_listed(obj: StoredObject, entry: LedgerEntry, model_id: str | None) -> str:
    if (obj.etag, obj.size) != (entry.etag, entry.size):
        return CHANGED
    if model_id is None:
        return UNCHANGED  # no model takes it now: what the ledger knows stands
    if entry.outcome == SKIPPED:
        return OTHER_MODEL  # skipped before, a route takes it now
    if entry.outcome == ERROR and entry.stage in RETRIED_STAGES:
        return RETRY
    if entry.model_id != model_id:
        return OTHER_MODEL
    return UNCHANGED


def merge_ledger(ledger: Iterable[LedgerEntry], updates: Iterable[LedgerEntry]) -> Iterator[LedgerEntry]:
    """The ledger with a run's entries applied (an update replaces the entry of its URI);
    both inputs sorted by URI, the output too."""
    known_iter, update_iter = iter(ledger), iter(updates)
    entry, update = next(known_iter, None), next(update_iter, None)
    while entry is not None or update is not None:
        if update is None or (entry is not None and entry.uri < update.uri):
            assert entry is not None  # the loop runs while either is left
            yield entry
            entry = next(known_iter, None)
        else:
            if entry is not None and entry.uri == update.uri:
                entry = next(known_iter, None)
            yield update
            update = next(update_iter, None)


class _Unconditional(enum.Enum):
    TOKEN = enum.auto()


_UNCONDITIONAL = _Unconditional.TOKEN  # a sentinel type mypy can narrow away


def write_snapshot(output_uri: str, name: str, entries: Iterable[LedgerEntry], part_rows: int = PART_ROWS,
                   index_extra: dict | None = None,
                   expected_current: str | None | _Unconditional = _UNCONDITIONAL) -> str:
    """Write a sorted ledger as snapshot `name` and make it current; returns its URI.

    `index_extra` is stored in the snapshot's index.json next to its parts (incremental runs
    keep the committed run dates there, so the switch to `CURRENT` commits them too).
    `expected_current`, the version of `CURRENT` from `read_current` (None: there was
    none), makes the switch conditional on it.

    Raises:
        MediaJobsError: the entries are not in key order.
        PointerMovedError: `CURRENT` is no longer the version expected.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = parse_uri(output_uri).as_prefix().join(MANIFEST_DIR)
    snapshot = manifest.join(name)
    fs = filesystem_for(snapshot)
    if snapshot.scheme == "file":
        fs.create_dir(snapshot.fs_path, recursive=True)  # S3 needs no folders (and would get markers)
    parts: list[dict] = []
    rows: list[dict] = []  # a row group's worth: the part itself is written as it grows
    part: dict = {}
    previous: str | None = None

    def write_group(last: bool) -> None:
        if rows:
            if not part:
                file = f"part-{len(parts):05d}.parquet"
                stream = fs.open_output_stream(snapshot.join(file).fs_path)
                part.update(file=file, first_uri=rows[0]["uri"], rows=0, stream=stream,
                            writer=pq.ParquetWriter(stream, ledger_schema(), compression="zstd"))
            part["writer"].write_table(pa.Table.from_pylist(rows, schema=ledger_schema()))
            part["rows"] += len(rows)
            part["last_uri"] = rows[-1]["uri"]
            rows.clear()
        if part and (last or part["rows"] >= part_rows):
            part.pop("writer").close()
            part.pop("stream").close()
            parts.append({"file": part["file"], "first_uri": part["first_uri"], "last_uri": part["last_uri"],
                          "rows": part["rows"]})
            part.clear()

    for entry in entries:
        _check_order(previous, entry.uri, "the new ledger")
        previous = entry.uri
        rows.append(asdict(entry))
        if len(rows) >= min(GROUP_ROWS, part_rows - part.get("rows", 0)):
            write_group(last=False)
    write_group(last=True)
    index = {**(index_extra or {}), "parts": parts}
    write_bytes(snapshot.join("index.json").uri, json.dumps(index, indent=1).encode())
    pointer = f"{name}\n".encode()  # the snapshot's name holds the run id: unique to this commit
    if expected_current is _UNCONDITIONAL:
        write_bytes(manifest.join(CURRENT).uri, pointer)
    else:
        write_pointer(manifest.join(CURRENT).uri, pointer, expected_current)  # the switch: last, one small object
    return snapshot.uri


def prune_snapshots(output_uri: str, keep: int = KEEP_SNAPSHOTS) -> list[str]:
    """Delete all but the newest `keep` snapshots (names sort by run date, then run id),
    never the current one; returns the names deleted. Old snapshots are the ledger as it was
    on earlier dates (for audits); at 10 million objects each is some hundreds of MB."""
    manifest = parse_uri(output_uri).as_prefix().join(MANIFEST_DIR)
    current = current_snapshot(output_uri)
    names = sorted({o.uri[len(manifest.as_prefix().uri):].split("/", 1)[0]
                    for o in list_objects(manifest.uri)} - {CURRENT})
    doomed = [n for n in names[:-keep] if current is None or manifest.join(n).uri != current] if keep else []
    for name in doomed:
        delete_prefix(manifest.join(name).uri)
    return doomed


def deleted_entry(entry: LedgerEntry, run_date: str) -> LedgerEntry:
    """The ledger entry of an object no longer listed: kept as it was (its rows stay in the
    outputs, under the run date that wrote them), marked deleted on `run_date`."""
    return replace(entry, deleted_on=run_date)


def restored_entry(entry: LedgerEntry) -> LedgerEntry:
    """The ledger entry of a deleted object listed again, unchanged: its earlier rows stand."""
    return replace(entry, deleted_on="")
