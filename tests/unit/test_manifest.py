"""The incremental-scoring ledger: merge-join decisions, snapshots written and read back in
key order, and local listings in the order S3 lists keys. Local files only; no Ray."""

from __future__ import annotations

import pytest

from jobs.errors import MediaJobsError
from jobs.nightly.manifest import (Decision, LedgerEntry, current_snapshot, decide, deleted_entry, merge_ledger,
                           prune_snapshots, read_ledger, restored_entry, write_snapshot)
from jobs.storage.objects import StoredObject, list_objects


def _obj(name: str, etag: str = "e1", size: int = 10) -> StoredObject:
    return StoredObject(f"s3://b/in/{name}", size, etag)


def _entry(name: str, etag: str = "e1", size: int = 10, model: str = "m1", outcome: str = "predicted",
           stage: str = "", deleted_on: str = "") -> LedgerEntry:
    return LedgerEntry(f"s3://b/in/{name}", etag, size, model, "run-1", "2026-11-20", outcome, stage, deleted_on)


def _reasons(decisions) -> dict[str, str]:
    return {d.uri.rsplit("/", 1)[-1]: d.reason for d in decisions}


def test_every_object_in_listing_or_ledger_gets_one_decision():
    listing = [_obj("a.jpg"), _obj("b.jpg", etag="e2"), _obj("c.jpg"), _obj("d.jpg"), _obj("e.jpg"),
               _obj("f.jpg", size=11), _obj("g.jpg"), _obj("h.jpg"), _obj("i.jpg", etag="e2")]
    gone = {"deleted_on": "2026-11-21"}
    ledger = [_entry("b.jpg"), _entry("c.jpg", model="m0"), _entry("d.jpg"), _entry("e.jpg", outcome="error",
              stage="read"), _entry("f.jpg"), _entry("fa.jpg"), _entry("g.jpg", outcome="error", stage="decode"),
              _entry("h.jpg", **gone), _entry("i.jpg", **gone), _entry("z.jpg", **gone)]
    decisions = list(decide(listing, ledger, model_id="m1"))
    assert _reasons(decisions) == {"a.jpg": "new", "b.jpg": "changed", "c.jpg": "other-model", "d.jpg": "unchanged",
                                   "e.jpg": "retry", "f.jpg": "changed", "fa.jpg": "deleted", "g.jpg": "unchanged",
                                   "h.jpg": "restored", "i.jpg": "changed"}
    assert [d.uri for d in decisions] == sorted(d.uri for d in decisions)
    assert {d.uri.rsplit("/", 1)[-1] for d in decisions if d.score} == {"a.jpg", "b.jpg", "c.jpg", "e.jpg", "f.jpg",
                                                                         "i.jpg"}


def test_unsorted_input_is_refused_not_misjoined():
    with pytest.raises(MediaJobsError, match="the input listing is not in key order"):
        list(decide([_obj("b.jpg"), _obj("a.jpg")], [], "m1"))
    with pytest.raises(MediaJobsError, match="the manifest is not in key order"):
        list(decide([], [_entry("b.jpg"), _entry("a.jpg")], "m1"))


def test_merge_replaces_updated_entries_and_keeps_the_rest_in_order():
    ledger = [_entry("a.jpg"), _entry("c.jpg"), _entry("e.jpg")]
    updates = [_entry("b.jpg", model="m2"), _entry("c.jpg", model="m2"), deleted_entry(_entry("e.jpg"), "2026-11-21")]
    merged = list(merge_ledger(ledger, updates))
    assert [(e.uri.rsplit("/", 1)[-1], e.model_id, e.outcome, e.deleted_on) for e in merged] == [
        ("a.jpg", "m1", "predicted", ""), ("b.jpg", "m2", "predicted", ""), ("c.jpg", "m2", "predicted", ""),
        ("e.jpg", "m1", "predicted", "2026-11-21")]
    assert restored_entry(merged[-1]) == _entry("e.jpg")


def test_snapshot_round_trip_across_parts_and_the_current_pointer(tmp_path):
    output = str(tmp_path / "out") + "/"
    assert current_snapshot(output) is None and list(read_ledger(None)) == []
    entries = [_entry(f"{i:04d}.jpg", etag=f"e{i}") for i in range(25)]
    first = write_snapshot(output, "snapshot-run-1", entries, part_rows=10)
    assert current_snapshot(output) == first
    assert sorted(p.name for p in (tmp_path / "out" / "_manifest" / "snapshot-run-1").iterdir()) == [
        "index.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert list(read_ledger(first, batch_rows=3)) == entries
    second = write_snapshot(output, "snapshot-run-2", merge_ledger(read_ledger(first), [_entry("0003.jpg", etag="x")]))
    assert current_snapshot(output) == second
    assert [e.etag for e in read_ledger(second)][:5] == ["e0", "e1", "e2", "x", "e4"]
    assert list(read_ledger(first)) == entries  # the old snapshot is untouched until cleaned up


def test_pruning_keeps_the_newest_snapshots_and_always_the_current_one(tmp_path):
    output = str(tmp_path / "out") + "/"
    for date in ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"):
        write_snapshot(output, f"snapshot-{date}-r", [_entry("a.jpg", etag=date)])
    (tmp_path / "out" / "_manifest" / "CURRENT").write_text("snapshot-2026-11-21-r")  # e.g. rolled back by hand
    assert prune_snapshots(output, keep=2) == ["snapshot-2026-11-20-r"]
    assert sorted(p.name for p in (tmp_path / "out" / "_manifest").iterdir()) == [
        "CURRENT", "snapshot-2026-11-21-r", "snapshot-2026-11-22-r", "snapshot-2026-11-23-r"]
    assert [e.etag for e in read_ledger(current_snapshot(output))] == ["2026-11-21"]


def test_a_snapshot_of_unsorted_entries_is_refused_before_it_becomes_current(tmp_path):
    output = str(tmp_path / "out") + "/"
    with pytest.raises(MediaJobsError, match="the new ledger is not in key order"):
        write_snapshot(output, "snapshot-bad", [_entry("b.jpg"), _entry("a.jpg")])
    assert current_snapshot(output) is None


def test_local_listing_is_in_s3_key_order(tmp_path):
    for name in ("a0.jpg", "a-b.jpg", "a/x.jpg", "a/b/c.jpg", "a.jpg", "b.jpg", "Z.jpg", "é.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    keys = [o.uri[len(str(tmp_path)) + 1:] for o in list_objects(str(tmp_path) + "/")]
    assert keys == sorted(keys, key=lambda k: k.encode("utf-8"))
    assert keys == ["Z.jpg", "a-b.jpg", "a.jpg", "a/b/c.jpg", "a/x.jpg", "a0.jpg", "b.jpg", "é.jpg"]


def test_decision_score_flag():
    assert Decision("u", "new", None, None).score and not Decision("u", "unchanged", None, None).score
    assert not Decision("u", "deleted", None, None).score
