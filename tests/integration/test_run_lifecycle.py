"""The run lifecycle (jobs/runs) in-process against the real SeaweedFS, without Ray: Delta
commits that replace a table whole, idempotent retries, fencing of a run that lost its
lease, a reader that never sees half a run, the earlier layout refused and converted."""

from __future__ import annotations

import json
import threading

import pyarrow as pa
import pytest

from jobs.storage.delta import open_table, read_table
from jobs.runs.lifecycle import Run, RunFencedError, TableWrite
from jobs.storage.objects import list_objects, parse_uri, read_bytes
from jobs.storage.checks import ensure_bucket

pytestmark = pytest.mark.integration
BUCKET = "it-lifecycle"


@pytest.fixture(scope="module")
def bucket(local_stack):
    ensure_bucket(f"s3://{BUCKET}/")
    return f"s3://{BUCKET}/"


def _rows(run: Run, n: int) -> pa.Table:
    return pa.table({"uri": [f"s3://in/{i:04d}.jpg" for i in range(n)], "label": ["cat"] * n,
                     "run_id": [run.run_id] * n})


def _commit(run: Run, n: int, errors: int = 0) -> dict[str, int]:
    failed = pa.table({"uri": [f"s3://in/bad-{i}.jpg" for i in range(errors)], "run_id": [run.run_id] * errors})
    return run.commit([TableWrite("predictions", lambda: _rows(run, n)), TableWrite("errors", lambda: failed)])


def _run_ids(output: str, table: str) -> set[str]:
    return set(read_table(output + table + "/").column("run_id").to_pylist())


def test_each_run_replaces_each_table_in_one_commit_and_says_so_in_its_summary(bucket):
    output = bucket + "plain/"
    with Run(output, ["predictions", "errors"], echo=lambda line: None) as first:
        first.staging  # noqa: B018 - the run's own folder
        assert _commit(first, 30, errors=2) == {"predictions": 0, "errors": 0}
        first.finish({"listed": 32})
    with Run(output, ["predictions", "errors"], echo=lambda line: None) as second:
        versions = _commit(second, 25)
        summary_uri = second.finish({"listed": 25})
    assert versions == {"predictions": 1, "errors": 1}
    assert _run_ids(output, "predictions") == {second.run_id} and read_table(output + "predictions/").num_rows == 25
    assert read_table(output + "errors/").num_rows == 0  # the errors of the first run are gone with it
    assert read_table(output + "predictions/", version=0).num_rows == 30  # time travel to the first run
    history = open_table(parse_uri(output + "predictions/")).history()
    assert [h.get("mediajobs.run_id") for h in history] == [second.run_id, first.run_id]  # one commit per run
    summary = json.loads(read_bytes(summary_uri))
    assert summary["table_versions"] == {"predictions": 1, "errors": 1} and summary["run_id"] == second.run_id
    assert not list(list_objects(output + "_staging/" + second.run_id + "/"))
    assert not list(list_objects(output + "_lock.json"))  # released


def test_a_commit_whose_answer_was_lost_is_not_made_twice(bucket):
    output = bucket + "retried/"
    with Run(output, ["predictions", "errors"], echo=lambda line: None) as run:
        _commit(run, 10)
        run.versions.clear()  # as if the answers never came back: the retry finds its own commits
        assert _commit(run, 10) == {"predictions": 0, "errors": None}  # no errors, no table
    assert len(open_table(run.output.join("predictions")).history()) == 1


def test_a_run_that_lost_its_lease_cannot_commit_and_the_new_holder_commit_stands(bucket, monkeypatch):
    """A is stalled past its TTL (its renewals stop); B takes the output over and commits;
    A wakes up: before its commit, and between its snapshot and its commit."""
    monkeypatch.setenv("MEDIAJOBS_LEASE_TTL_SECONDS", "1")
    output = bucket + "fenced/"
    with Run(output, ["predictions", "errors"], echo=lambda line: None) as old:
        _commit(old, 5)
        old.finish({})

    a = Run(output, ["predictions", "errors"], echo=lambda line: None).__enter__()
    a.keeper._stop.set()  # A stalls: no more renewals
    import time

    time.sleep(2.5)
    with Run(output, ["predictions", "errors"], echo=lambda line: None) as b:
        assert b.keeper.lease.taken_over
        _commit(b, 7)
        b.finish({})
    with pytest.raises(RunFencedError, match=rf"run {a.run_id} lost its lease on {output}.*Nothing of this run was "
                                             "committed.*deletes nothing"):
        _commit(a, 99)
    a.__exit__(RunFencedError, RunFencedError("x"), None)
    assert _run_ids(output, "predictions") == {b.run_id}

    # The narrower window: A has its snapshot and sees its lease when C takes over and commits.
    a2 = Run(output, ["predictions", "errors"], echo=lambda line: None).__enter__()
    a2.keeper._stop.set()
    time.sleep(2.5)
    check = a2.keeper.held
    holder: list[Run] = []

    def taken_over_right_after_the_check() -> bool:
        held = check()
        with Run(output, ["predictions", "errors"], echo=lambda line: None) as c:
            _commit(c, 3)
            c.finish({})
            holder.append(c)
        return held

    monkeypatch.setattr(a2.keeper, "held", taken_over_right_after_the_check)
    with pytest.raises(RunFencedError, match="another run committed to predictions first"):
        _commit(a2, 99)
    assert _run_ids(output, "predictions") == {holder[0].run_id} and read_table(output + "predictions/").num_rows == 3


def test_a_reader_polling_during_commits_never_sees_part_of_a_run(bucket):
    output = bucket + "polled/"
    sizes: dict[str, int] = {}
    seen: list[tuple[set, int]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            if open_table(parse_uri(output + "predictions/")):
                table = read_table(output + "predictions/")
                seen.append((set(table.column("run_id").to_pylist()), table.num_rows))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for n in (40, 7, 120, 1, 64):
            with Run(output, ["predictions", "errors"], echo=lambda line: None) as run:
                sizes[run.run_id] = n
                _commit(run, n)
                run.finish({})
    finally:
        done.set()
        reader.join()
    assert seen
    for run_ids, rows in seen:
        assert len(run_ids) == 1 and rows == sizes[next(iter(run_ids))], (run_ids, rows)


def test_an_output_of_the_earlier_layout_is_refused_and_converts_in_place(bucket):
    import pyarrow.parquet as pq

    from jobs.storage.delta import LegacyLayoutError
    from jobs.storage.objects import filesystem_for, parse_uri
    from jobs.runs.table_maintenance import convert_output

    output = bucket + "legacy/"
    location = parse_uri(output).as_prefix()
    pq.write_table(pa.table({"uri": ["a", "b"], "label": ["x", "y"]}),
                   location.join("predictions", "part-old-0.parquet").fs_path, filesystem=filesystem_for(location))
    with pytest.raises(LegacyLayoutError, match=r"output: s3://it-lifecycle/legacy/predictions/ holds Parquet files "
                                                r"of the earlier mediajobs layout.*`mediajobs tables convert "
                                                r"s3://it-lifecycle/legacy/`"):
        Run(output, ["predictions", "errors"], echo=lambda line: None).__enter__()
    assert convert_output(output) == ["predictions"]
    assert sorted(read_table(output + "predictions/").column("uri").to_pylist()) == ["a", "b"]
    with Run(output, ["predictions", "errors"], echo=lambda line: None) as run:
        _commit(run, 3)
    assert read_table(output + "predictions/").num_rows == 3


def test_staging_left_by_a_killed_run_is_dropped_by_the_next_run(bucket):
    from jobs.storage.objects import write_bytes

    output = bucket + "stale/"
    write_bytes(output + "_staging/20260101T000000Z-dead00/part.parquet", b"x")
    write_bytes(output + "_staging/run_date=2026-01-01/scored/x.parquet", b"x")  # a nightly date's: kept
    with Run(output, ["predictions", "errors"], echo=lambda line: None) as run:
        _commit(run, 1)
        run.finish({})
    left = {o.uri[len(output):] for o in list_objects(output + "_staging/")}
    assert left == {"_staging/run_date=2026-01-01/scored/x.parquet"}


def _events(output: str, run: Run) -> list[dict]:
    return [json.loads(line) for line in read_bytes(f"{output}runs/{run.run_id}/events.jsonl").decode().splitlines()]


def test_each_phase_of_a_run_is_an_event_under_runs(bucket):
    """runs/<run_id>/events.jsonl: one object per phase, in order, with the run's counts; a
    failed run says so (and why) before it releases the output; a fenced one says that."""
    output = bucket + "events/"
    with Run(output, ["predictions", "errors"], echo=lambda line: None) as run:
        run.events.add("scoring", objects=32)
        scoring = _events(output, run)  # written as the work begins, for whoever follows the run
        _commit(run, 30, errors=2)
        summary_uri = run.finish({"listed": 32})
    events = _events(output, run)
    assert [e["phase"] for e in scoring] == ["started", "scoring"]
    assert [e["phase"] for e in events] == ["started", "scoring", "committing", "committed", "finished"]
    assert {e["run_id"] for e in events} == {run.run_id}
    assert events[1]["counts"] == {"objects": 32}
    assert events[3]["counts"]["versions"] == {"predictions": 0, "errors": 0}
    assert events[-1]["counts"] == {"summary": summary_uri}
    seconds = [e["seconds"] for e in events]
    assert seconds == sorted(seconds) and all(e["at"].endswith("Z") for e in events)

    with pytest.raises(ValueError):
        with Run(output, ["predictions", "errors"], echo=lambda line: None) as failed:
            failed.events.add("scoring", objects=3)
            raise ValueError("the model refused its input\nsecond line")
    last = _events(output, failed)[-1]
    assert (last["phase"], last["counts"]) == ("failed", {"error": "the model refused its input"})
    assert not list(list_objects(output + "_lock.json"))  # and then it released the output

    with pytest.raises(ValueError):  # refused before its work began: no trace under runs/
        with Run(output, ["predictions", "errors"], echo=lambda line: None) as refused:
            raise ValueError("the model does not load")
    assert not list(list_objects(f"{output}runs/{refused.run_id}/"))
