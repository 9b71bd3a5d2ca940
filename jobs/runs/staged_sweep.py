"""Staged rows read back in URI order, a window at a time: the commit's memory is one
window's rows, whatever the number of objects, frames or windows a run staged.

The scoring actors stage one Parquet file per block of objects, and a block is a run of
consecutive objects of a work list (sorted by URI): each file covers a narrow URI range,
and all the rows of one object in one file (a retried block or an earlier attempt may
have staged a second copy in another file). So the files are read in the order of their
first URI, and once file i is read, every object before the first URI of file i+1 has all
its rows in hand: those rows form a window, handed over with the work-list entries of the
same range (what the run expected there), and dropped before the next window is read.

    footers (first/last URI of each file) ─▶ files by first URI ─▶ read ─▶ rows below the
    next file's first URI + the expected entries below it ─▶ Window ─▶ the caller's
    aggregation (Arrow/NumPy, per window) ─▶ appended to the tables it writes

A file whose range spans many others (rows written in another order) only keeps its
later rows buffered longer; the result is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FILE_COLUMN", "SOURCE_COLUMN", "SortedStream", "StagedFile", "WINDOW_ROWS", "Window", "staged_files",
           "windows"]

WINDOW_ROWS = 65_536  # staged rows per window: ~25-50 MB of Arrow with their list columns
FILE_COLUMN = "__file"  # the rank of the row's file in URI order (picks one copy of an object)
SOURCE_COLUMN = "__source"  # which of the caller's sources (e.g. a route) the file belongs to
FOOTER_THREADS = 16  # footers are small reads: on S3, latency-bound


@dataclass(frozen=True)
class StagedFile:
    path: str  # in the filesystem's terms (no scheme)
    source: int
    first_uri: str
    last_uri: str
    rows: int


@dataclass
class Window:
    rows: pa.Table | None  # staged rows of the objects in the range, with FILE_COLUMN and SOURCE_COLUMN
    expected: pa.Table  # the work-list entries in the same range, sorted by URI


def staged_files(fs, paths: Iterable[tuple[str, int]]) -> list[StagedFile]:
    """The URI range of each (path, source) from its footer (the column statistics of
    `uri`), or from its `uri` column where a writer kept no statistics; files without rows
    are left out. Sorted by first URI."""
    with ThreadPoolExecutor(FOOTER_THREADS) as pool:
        found = list(pool.map(lambda item: _describe(fs, *item), list(paths)))
    return sorted((f for f in found if f is not None), key=lambda f: (f.first_uri, f.path))


def _describe(fs, path: str, source: int) -> StagedFile | None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        metadata = parquet.metadata
        if not metadata.num_rows:
            return None
        column = metadata.schema.to_arrow_schema().get_field_index("uri")
        ranges = [metadata.row_group(i).column(column).statistics for i in range(metadata.num_row_groups)]
        if all(s is not None and s.has_min_max for s in ranges):
            return StagedFile(path, source, min(s.min for s in ranges), max(s.max for s in ranges), metadata.num_rows)
        bounds = pc.min_max(parquet.read(columns=["uri"]).column("uri"))
        return StagedFile(path, source, bounds["min"].as_py(), bounds["max"].as_py(), metadata.num_rows)


class SortedStream:
    """A sorted run of tables (a work list's files, batch by batch), taken from the front by
    URI bound."""

    def __init__(self, tables: Iterator[pa.Table]) -> None:
        self._tables = tables
        self._head: pa.Table | None = None

    def take_below(self, bound: str | None, limit: int | None = None) -> list[pa.Table]:
        """The rows with URI < bound (all the rest for None; at most about `limit` rows)."""
        import pyarrow.compute as pc

        taken, count = [], 0
        while limit is None or count < limit:
            if self._head is None:
                self._head = next(self._tables, None)
                if self._head is None:
                    break
            head = self._head
            n = head.num_rows if bound is None else int(pc.sum(pc.less(head.column("uri"), bound)).as_py() or 0)
            taken.append(head.slice(0, n))
            count += n
            self._head = head.slice(n) if n < head.num_rows else None
            if n < head.num_rows:
                break
        return taken

    @property
    def exhausted(self) -> bool:
        if self._head is None:
            self._head = next(self._tables, None)
        return self._head is None


def windows(fs, files: list[StagedFile], columns: Callable[[StagedFile], list[str]], expected: list[SortedStream],
            expected_schema: pa.Schema, window_rows: int = WINDOW_ROWS,
            read_filter: Callable[[pa.Table, StagedFile], pa.Table] | None = None) -> Iterator[Window]:
    """The staged rows of `files` (from `staged_files`) and the `expected` entries (sorted
    streams, e.g. one work list per route), window by window in URI order. Every row and
    every expected entry is in exactly one window. `columns` says which columns to read of
    a file (sources may differ: a video route's rows have frame positions, an image
    route's none; a window's rows have the union, null where a file had no such column).
    `read_filter` may drop rows of a file as it is read (e.g. another model's)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    buffered: list[pa.Table] = []
    count = 0
    for rank, staged in enumerate(files):
        with fs.open_input_file(staged.path) as handle:
            table = pq.read_table(handle, columns=columns(staged), use_threads=False, pre_buffer=False)
        table = table.append_column(FILE_COLUMN, pa.array(np.full(table.num_rows, rank, np.int32))) \
                     .append_column(SOURCE_COLUMN, pa.array(np.full(table.num_rows, staged.source, np.int16)))
        if read_filter is not None:
            table = read_filter(table, staged)
        buffered.append(table)
        count += table.num_rows
        following = files[rank + 1].first_uri if rank + 1 < len(files) else None
        if following is not None and count < window_rows:
            continue
        rows = pa.concat_tables(buffered, promote_options="default") if len(buffered) > 1 else buffered[0]
        if following is None:  # the last file: the expected entries up to its last row here, the rest below
            done, buffered, count = rows, [], 0
            last = pc.max(rows.column("uri")).as_py()
            bound = "" if last is None else last + "\x00"  # the least string after it
        else:
            below = pc.less(rows.column("uri"), following)
            done, rest = rows.filter(below), rows.filter(pc.invert(below))
            buffered, count = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
            bound = following
        yield Window(done, _expected_below(expected, bound, expected_schema))
    while not all(stream.exhausted for stream in expected):  # expected entries past the last staged row
        yield Window(None, _expected_below(expected, None, expected_schema, window_rows))


def _expected_below(streams: list[SortedStream], bound: str | None, schema, limit: int | None = None):
    import pyarrow as pa

    pieces = [t for stream in streams for t in stream.take_below(bound, limit)]
    table = pa.concat_tables([t.select(schema.names).cast(schema) for t in pieces]) if pieces else schema.empty_table()
    return table.sort_by("uri") if len(streams) > 1 and table.num_rows else table

