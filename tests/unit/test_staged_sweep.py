"""The streamed commit's building blocks, on local Parquet files: staged rows read back a
window at a time in URI order (every row and every expected entry in exactly one window,
an object's rows never split), and the one per-object vote."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tasks.object_votes import object_votes
from jobs.runs.staged_parts import PartWriter, parquet_files, read_parts
from jobs.runs.staged_sweep import FILE_COLUMN, SortedStream, staged_files, windows
from jobs.storage.objects import parse_uri

FS = pafs.LocalFileSystem()
EXPECTED = pa.schema([("uri", pa.string()), ("size", pa.int64())])


def _uri(i: int) -> str:
    return f"s3://archive/obj-{i:05d}.mp4"


def _write(path, uris: list[str], statistics: bool = True) -> None:
    rows = pa.table({"uri": uris, "frame": list(range(len(uris)))})
    pq.write_table(rows, str(path), write_statistics=statistics)


def _expected(uris: list[str], per_table: int = 7):
    tables = (pa.table({"uri": uris[i:i + per_table], "size": list(range(i, i + len(uris[i:i + per_table])))},
                       schema=EXPECTED) for i in range(0, len(uris), per_table))
    return SortedStream(tables)


def test_windows_hand_over_each_object_whole_and_every_row_once(tmp_path):
    """Blocks of consecutive objects (frames several rows each), a retried block staged
    twice, one file whose rows span the whole range, files written without statistics:
    each window holds all the rows of its objects, and the expected entries of its range."""
    random.seed(3)
    objects = [_uri(i) for i in range(400)]
    frames = {uri: random.randint(1, 6) for uri in objects}
    paths = []
    for n, start in enumerate(range(0, 380, 20)):  # blocks of 20 objects; the last 20 only in the wide file
        block = [uri for uri in objects[start:start + 20] for _ in range(frames[uri])]
        random.shuffle(block)  # rows inside a file in any order
        paths.append(tmp_path / f"block-{n:03d}.parquet")
        _write(paths[-1], block, statistics=n % 3 != 0)
    retried = tmp_path / "retried.parquet"
    _write(retried, [uri for uri in objects[40:60] for _ in range(frames[uri])])
    wide = tmp_path / "wide.parquet"
    _write(wide, [objects[0], objects[199]] + [uri for uri in objects[380:] for _ in range(frames[uri])])
    files = staged_files(FS, [(str(p), 0) for p in [*paths, retried, wide]])
    assert [f.first_uri for f in files] == sorted(f.first_uri for f in files)

    seen_rows: Counter = Counter()
    seen_expected: list[str] = []
    window_of: dict[str, set[int]] = defaultdict(set)
    got = list(windows(FS, files, lambda staged: ["uri", "frame"], [_expected(objects)], EXPECTED, window_rows=50))
    assert len(got) > 5  # more than one window, or nothing was tested
    for n, window in enumerate(got):
        seen_expected += window.expected.column("uri").to_pylist()
        for uri, file in zip(window.rows.column("uri").to_pylist(), window.rows.column(FILE_COLUMN).to_pylist()):
            seen_rows[uri, file] += 1
            window_of[uri].add(n)
    assert seen_expected == objects  # every expected entry once, in order
    assert all(len(ns) == 1 for ns in window_of.values())  # an object's rows never split over windows
    total = sum(f.rows for f in files)
    assert sum(seen_rows.values()) == total
    for uri in objects[40:60]:  # both copies of the retried block arrive, told apart by their file
        assert len({file for (u, file) in seen_rows if u == uri}) == 2


def test_windows_hand_over_expected_entries_past_the_last_staged_row(tmp_path):
    """Objects the actors never staged are still handed over (the commit counts them as
    missing), a bounded number at a time."""
    _write(tmp_path / "a.parquet", [_uri(i) for i in range(10)])
    files = staged_files(FS, [(str(tmp_path / "a.parquet"), 0)])
    objects = [_uri(i) for i in range(300)]
    got = list(windows(FS, files, lambda staged: ["uri"], [_expected(objects)], EXPECTED, window_rows=64))
    assert [w.expected.num_rows for w in got][0] == 10
    assert all(w.rows is None for w in got[1:]) and all(w.expected.num_rows <= 70 for w in got[1:])
    assert [u for w in got for u in w.expected.column("uri").to_pylist()] == objects


def test_windows_merge_several_sorted_work_lists(tmp_path):
    """Two routes' work lists interleave in URI order; each window gets both routes'
    entries of its range, sorted."""
    objects = [_uri(i) for i in range(100)]
    _write(tmp_path / "a.parquet", objects[:50])
    _write(tmp_path / "b.parquet", objects[50:])
    files = staged_files(FS, [(str(tmp_path / "a.parquet"), 0), (str(tmp_path / "b.parquet"), 1)])
    even, odd = objects[::2], objects[1::2]
    got = list(windows(FS, files, lambda staged: ["uri"], [_expected(even), _expected(odd)], EXPECTED,
                       window_rows=10))
    assert got[0].expected.column("uri").to_pylist() == objects[:50]
    assert [u for w in got for u in w.expected.column("uri").to_pylist()] == objects


def test_part_writer_cuts_parts_and_reads_back_as_a_stream(tmp_path):
    location = parse_uri(str(tmp_path / "parts"))
    writer = PartWriter(location, FS, EXPECTED, part_rows=25)
    for start in range(0, 60, 11):
        writer.append(pa.table({"uri": [_uri(i) for i in range(start, min(start + 11, 60))],
                                "size": list(range(start, min(start + 11, 60)))}))
    assert writer.close() == 60
    files = parquet_files(location)
    assert [pq.read_metadata(f).num_rows for f in files] == [25, 25, 10]
    assert read_parts(FS, location, EXPECTED).read_all().column("size").to_pylist() == list(range(60))
    assert read_parts(FS, parse_uri(str(tmp_path / "none")), EXPECTED).read_all().num_rows == 0


def _reference_vote(rows: list[list[float]]):
    means = np.mean(np.asarray(rows, dtype=np.float64), axis=0)
    votes = np.bincount([int(np.argmax(r)) for r in rows], minlength=len(means))
    tied = np.flatnonzero(votes == votes.max())
    return int(tied[np.argmax(means[tied])]), means


@pytest.mark.parametrize("classes", [2, 10])
def test_object_votes_match_the_majority_rule(classes):
    """Majority of the examples' labels, ties broken by the mean scores; score and top-k
    are the mean scores; the latest example's time."""
    rng = np.random.default_rng(classes)
    uris, probabilities, times = [], [], []
    start = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    for i in range(300):
        for _ in range(int(rng.integers(1, 7))):
            uris.append(_uri(i))
            probabilities.append(rng.dirichlet(np.ones(classes)).astype(np.float32).tolist())
            times.append(start + dt.timedelta(seconds=int(rng.integers(0, 1000))))
    # A tie: two examples, one vote each; the second class has the higher mean.
    uris += [_uri(999)] * 2
    probabilities += [[0.6, 0.4] + [0.0] * (classes - 2), [0.0, 0.9] + [0.1 / (classes - 2)] * (classes - 2)
                      if classes > 2 else [0.0, 1.0]]
    times += [start, start]
    examples = pa.table({"uri": uris, "probabilities": pa.array(probabilities, pa.list_(pa.float32())),
                         "scored_at": pa.array(times, pa.timestamp("us", tz="UTC"))})
    votes = object_votes(examples)
    names = [f"c{i}" for i in range(classes)]
    top_labels, top_scores = votes.top_k(names, 3)
    by_uri = defaultdict(list)
    for uri, p, t in zip(uris, probabilities, times):
        by_uri[uri].append((p, t))
    assert votes.uris.to_pylist() == list(by_uri)
    for n, (uri, rows) in enumerate(by_uri.items()):
        best, means = _reference_vote([p for p, _ in rows])
        assert votes.labels(names)[n] == names[best]
        assert votes.scores()[n] == pytest.approx(means[best])
        assert top_labels[n].as_py() == [names[i] for i in np.argsort(-means, kind="stable")[:3]]
        assert top_scores[n].as_py() == pytest.approx(sorted(means, reverse=True)[:3], rel=1e-6)
        assert votes.examples[n] == len(rows)
        assert votes.scored_at[n].as_py() == max(t for _, t in rows)
    assert votes.labels(names)[-1] == "c1"  # the tie went to the higher mean
