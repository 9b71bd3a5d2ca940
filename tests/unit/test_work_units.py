"""Work units (what a scoring actor takes per call) and the growing listing files a run
scores while it still lists. No Ray: the shapes themselves, and files on local disk."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.nightly.worklists import TODO_FLUSH_ROWS, WorkListWriter
from jobs.runs.work_units import OBJECTS, objects_of, units_of
from jobs.storage.objects import parse_uri


def _listing(n: int) -> pa.Table:
    return pa.table({"uri": [f"s3://b/images/{i:05d}.jpg" for i in range(n)], "size": list(range(n)),
                     "etag": [f"e{i}" for i in range(n)]})


def test_units_hold_every_object_once_in_order():
    units = list(units_of(_listing(600), 256))
    assert [u.num_rows for u in units] == [1, 1, 1]  # a row per unit: Ray Data never splits a row
    objects = [obj for u in units for obj in u.column(OBJECTS)[0].as_py()]
    assert [len(u.column(OBJECTS)[0].as_py()) for u in units] == [256, 256, 88]
    assert objects == _listing(600).to_pylist()


def test_a_batch_of_units_becomes_columns_for_the_decoder():
    units = list(units_of(_listing(5), 2))
    batch = {OBJECTS: [u.column(OBJECTS)[0].as_py() for u in units]}
    columns = objects_of(batch)
    assert list(columns["uri"]) == [f"s3://b/images/{i:05d}.jpg" for i in range(5)]
    assert [int(s) for s in columns["size"]] == [0, 1, 2, 3, 4] and list(columns["etag"])[-1] == "e4"


def test_listing_files_grow_from_one_page_so_scoring_starts_early(tmp_path):
    """A run's listing: the first file one page, then twice as large each, at most
    TODO_FLUSH_ROWS; each file announced once written, in order; no object lost."""
    written: list[str] = []
    folder = parse_uri(str(tmp_path / "listing"))
    writer = WorkListWriter(pafs.LocalFileSystem(), folder, "r1", _listing(1).schema, first_rows=100,
                            on_file=written.append)
    for row in _listing(1000).to_pylist():
        writer.add(row)
    writer.close()
    sizes = [pq.read_metadata(path).num_rows for path in written]
    assert sizes == [100, 200, 400, 300] and writer.rows == 1000 and written == sorted(written)
    unbounded = WorkListWriter(pafs.LocalFileSystem(), folder, "r2", first_rows=TODO_FLUSH_ROWS * 4)
    assert unbounded.file_rows == TODO_FLUSH_ROWS


def test_listing_parts_are_served_by_number_until_the_listing_ends():
    """The actor's logic, run here as plain asyncio: a reader asking for a file not yet
    written waits; after the end it gets None; after a failure, the failure."""
    from jobs.runs.listing_feed import ListingFailedError, ListingParts

    async def scenario() -> list:
        parts = ListingParts()
        waiting = asyncio.ensure_future(parts.part(1))
        await parts.add("p0")
        await asyncio.sleep(0.01)
        assert not waiting.done()  # file 1 is not written yet
        await parts.add("p1")
        seen = [await parts.part(0), await waiting]
        await parts.end()
        seen.append(await parts.part(2))
        failed = ListingParts()
        await failed.end(failure="cannot list s3://b/: access denied")
        try:
            await failed.part(0)
        except ListingFailedError as exc:
            seen.append(str(exc))
        return seen

    assert asyncio.run(scenario()) == ["p0", "p1", None, "cannot list s3://b/: access denied"]
