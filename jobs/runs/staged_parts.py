"""Parquet parts a commit writes and reads back under a run's staging: tables appended
window by window, read back batch by batch (never a whole table in the driver)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from jobs.storage.objects import Location, list_objects

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = ["PART_ROWS", "PartWriter", "parquet_files", "read_parts", "stage_dataset", "table_batches"]

PART_ROWS = 262_144  # rows per Parquet file a commit stages (and a date publishes: its files, by reference)


class PartWriter:
    """Rows appended to `part-NNNNN.parquet` files of at most `part_rows` rows under a folder
    (one row group per append). File names depend only on the row order, so staging a date
    again replaces the files."""

    def __init__(self, location: Location, fs, schema: pa.Schema, part_rows: int = PART_ROWS) -> None:
        self.location, self.fs, self.schema, self.part_rows = location, fs, schema, part_rows
        self.rows = self._in_part = self._parts = 0
        self._writer: pq.ParquetWriter | None = None  # the open part's

    def append(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        table = table.select(self.schema.names).cast(self.schema)
        while table.num_rows:
            if self._writer is None:
                if self.location.scheme == "file":
                    self.fs.create_dir(self.location.fs_path, recursive=True)
                self._writer = pq.ParquetWriter(f"{self.location.fs_path}/part-{self._parts:05d}.parquet",
                                                self.schema, filesystem=self.fs, compression="zstd")
            piece = table.slice(0, self.part_rows - self._in_part)
            self._writer.write_table(piece)
            self.rows += piece.num_rows
            self._in_part += piece.num_rows
            table = table.slice(piece.num_rows)
            if self._in_part >= self.part_rows:
                self._close_part()

    def _close_part(self) -> None:
        assert self._writer is not None  # called with a part open
        self._writer.close()
        self._writer, self._in_part = None, 0
        self._parts += 1

    def close(self) -> int:
        if self._writer is not None:
            self._close_part()
        return self.rows


def stage_dataset(ds, location: Location, fs, schema: pa.Schema, on_block: Callable[[pa.Table], None]) -> int:
    """Run the Ray dataset `ds` to its end from here, appending its blocks as they arrive to
    Parquet parts under `location` (the rows `write_parquet` would have staged, in fewer
    files) and telling `on_block` of each: the driver sees how far the run is, for its live
    progress line. Returns the rows staged. A failed run's parts stay for the sweep."""
    writer = PartWriter(location, fs, schema)
    for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        writer.append(block)
        on_block(block)
    return writer.close()


def parquet_files(location: Location) -> list[str]:
    """The Parquet files under a folder, in name order (fs paths)."""
    from jobs.storage.objects import parse_uri

    return sorted(parse_uri(o.uri).fs_path for o in list_objects(location.uri) if o.uri.endswith(".parquet"))


def table_batches(fs, paths: list[str], extra: dict[str, str] | None = None,
                  batch_rows: int = 65_536) -> Iterator[pa.Table]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in paths:
        with fs.open_input_file(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows):
                table = pa.Table.from_batches([batch])
                for name, value in (extra or {}).items():
                    table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
                yield table


def read_parts(fs, folder: Location, schema: pa.Schema) -> pa.RecordBatchReader:
    """The rows of the Parquet files under `folder` as a stream (empty if there are none)."""
    import pyarrow as pa

    batches = (batch for table in table_batches(fs, parquet_files(folder))
               for batch in table.select(schema.names).cast(schema).to_batches())
    return pa.RecordBatchReader.from_batches(schema, batches)
