"""The work lists of an incremental run: the objects each route scores, staged as Parquet
(`_staging/run_date=D/todo-<run_id>/<route>/`, and `pending-...` for those no earlier
attempt of the date finished), and the ledger entries of objects nothing scores
(`passthrough-<run_id>/`: skipped, deleted, restored), a file per TODO_FLUSH_ROWS rows, so
neither the decide pass, a route's scoring nor the commit holds a whole night's list in
memory. Rows go in listing order: every list is sorted by URI."""

from __future__ import annotations

from collections.abc import Callable

TODO_FLUSH_ROWS = 100_000  # the decide pass holds at most this many todo rows per route


class WorkListWriter:
    """Appends dict rows to Parquet files under a folder, a file per TODO_FLUSH_ROWS rows.

    `first_rows`: the first file holds that many rows and each next one twice as many, up to
    TODO_FLUSH_ROWS, for a reader that starts on the first file while the list is still being
    written (a plain run's scoring starts one listing page in, and 10M objects still make
    ~100 files). `on_file` is called with each file's path once it is written.
    """

    def __init__(self, fs, folder, run_id: str, schema=None, first_rows: int | None = None,
                 on_file: Callable[[str], None] | None = None) -> None:
        self.fs, self.folder, self.run_id = fs, folder, run_id
        self.schema = schema if schema is not None else TODO_SCHEMA()
        self.buffer: list[dict] = []
        self.rows = self.files = 0
        self.file_rows = min(first_rows or TODO_FLUSH_ROWS, TODO_FLUSH_ROWS)
        self.on_file = on_file

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.file_rows:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.buffer:
            return
        if self.folder.scheme == "file":
            self.fs.create_dir(self.folder.fs_path, recursive=True)
        table = pa.Table.from_pylist(self.buffer, schema=self.schema)
        path = f"{self.folder.fs_path}/part-{self.run_id}-{self.files:05d}.parquet"
        pq.write_table(table, path, filesystem=self.fs)
        self.rows += len(self.buffer)
        self.files += 1
        self.buffer.clear()
        self.file_rows = min(self.file_rows * 2, TODO_FLUSH_ROWS)
        if self.on_file is not None:
            self.on_file(path)

    def close(self) -> None:
        self.flush()


def TODO_SCHEMA():  # noqa: N802 - a schema constant, built lazily (pyarrow is imported on use)
    import pyarrow as pa

    return pa.schema([("uri", pa.string()), ("size", pa.int64()), ("etag", pa.string()), ("reason", pa.string())])


__all__ = ["TODO_FLUSH_ROWS", "TODO_SCHEMA", "WorkListWriter"]
