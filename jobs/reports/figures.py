"""What the morning report shows, gathered in one pass over a date's tables, batch by batch:
per modality the objects, examples, class mix and score histogram; the slowest objects;
the first errors; the skip reasons; the least confident images and frames. Its memory is
that of the rows shown, not of the night (a night's frames can be millions of rows, and
the report shows 20 of them).

    tables (read_run_tables, in memory) ─┐
    a date's partitions, streamed ───────┴▶ ReportFigures.add(name, batch) ─▶ render
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from jobs.nightly.drift import SCORE_BINS
from jobs.storage.objects import filesystem_for, parse_uri

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["COLUMNS", "ModalityFigures", "ReportFigures", "SCORE_BINS", "TopRows", "figures_of_tables",
           "read_figures"]

SLOWEST_ROWS = 20
MAX_ERROR_ROWS = 200
THUMBNAILS = 20  # the least confident images and frames shown
# What the report reads of each table (no top-k, no model stamps, no windows).
COLUMNS = {"predictions": ["uri", "modality", "label", "score", "examples", "seconds"],
           "errors": ["uri", "modality", "stage", "error", "seconds"], "skipped": ["reason"],
           "frames": ["uri", "label", "score", "frame_index", "timestamp_s"]}
# A batch at a time: pyarrow's defaults read ahead 16 batches of 4 files, each file's
# column chunks pre-buffered whole (a night's frames file holds up to 1M rows).
READAHEAD = {"batch_size": 65_536, "batch_readahead": 1, "fragment_readahead": 1}


class TopRows:
    """The first `limit` rows of everything added, in the order of `keys`: the rows a sort
    of the whole table would give first, kept in the memory of `limit` rows and one batch."""

    def __init__(self, keys: list[tuple[str, str]], limit: int) -> None:
        self.keys, self.limit = keys, limit
        self.rows: pa.Table | None = None

    def add(self, table: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.rows is not None and self.rows.num_rows == self.limit:
            # Only rows that sort no later than the last one kept can enter: test the first
            # key before sorting anything (most batches of a night then add nothing).
            column, order = self.keys[0]
            last = self.rows.column(column)[-1]
            if last.is_valid:
                table = table.filter((pc.less_equal if order == "ascending" else pc.greater_equal)(
                    table.column(column), last))
        if not table.num_rows:
            return
        merged = table if self.rows is None else pa.concat_tables([self.rows, table.cast(self.rows.schema)])
        self.rows = merged.sort_by(self.keys).slice(0, self.limit)

    def to_pylist(self) -> list[dict]:
        return [] if self.rows is None else self.rows.to_pylist()


@dataclass
class ModalityFigures:
    objects: int = 0
    examples: int = 0
    labels: Counter = field(default_factory=Counter)  # label (None: no label) -> objects, in order of appearance
    score_bins: np.ndarray = field(default_factory=lambda: np.zeros(SCORE_BINS, np.int64))


@dataclass
class ReportFigures:
    thumbnails: int = THUMBNAILS
    found: set = field(default_factory=set)  # modalities with predictions or errors
    modalities: dict[str, ModalityFigures] = field(default_factory=dict)
    slowest: dict[str, TopRows] = field(default_factory=lambda: {
        name: TopRows([("seconds", "descending")], SLOWEST_ROWS) for name in ("predictions", "errors")})
    errors: int = 0
    first_errors: TopRows = field(default_factory=lambda: TopRows([("stage", "ascending"), ("uri", "ascending")],
                                                                  MAX_ERROR_ROWS))
    skipped: int = 0
    skip_reasons: Counter = field(default_factory=Counter)
    least_confident: TopRows = field(init=False)  # its limit is `thumbnails`: set in __post_init__

    def __post_init__(self) -> None:
        self.least_confident = TopRows([("score", "ascending"), ("uri", "ascending"), ("frame_index", "ascending")],
                                       self.thumbnails)

    def add(self, name: str, rows: pa.Table | pa.RecordBatch) -> None:
        """Count one batch of a table's rows (predictions, errors, skipped or frames)."""
        import pyarrow as pa

        table = rows if isinstance(rows, pa.Table) else pa.Table.from_batches([rows])
        if not table.num_rows:
            return
        if name == "predictions":
            self._predictions(table)
        elif name == "errors":
            self.errors += table.num_rows
            self.found.update(m for m in table.column("modality").unique().to_pylist() if m)
            self._timed(name, table)
            self.first_errors.add(table.select(["uri", "modality", "stage", "error"]))
        elif name == "skipped":
            self.skipped += table.num_rows
            self.skip_reasons.update(dict(zip(*_value_counts(table.column("reason")))))
        elif name == "frames":
            self._candidates(table.select(["uri", "label", "score", "frame_index", "timestamp_s"]))

    def _predictions(self, table: pa.Table) -> None:
        import pyarrow.compute as pc

        self.found.update(m for m in table.column("modality").unique().to_pylist() if m)
        for modality in table.column("modality").unique().to_pylist():
            rows = table.filter(pc.equal(table.column("modality"), modality)) if modality is not None else \
                table.filter(pc.is_null(table.column("modality")))
            figures = self.modalities.setdefault(modality, ModalityFigures())
            figures.objects += rows.num_rows
            figures.examples += pc.sum(rows.column("examples")).as_py() or 0
            figures.labels.update(dict(zip(*_value_counts(rows.column("label")))))
            scores = rows.column("score").drop_null().to_numpy()
            figures.score_bins += np.histogram(np.clip(scores, 0, 1), bins=SCORE_BINS, range=(0, 1))[0]
        self._timed("predictions", table)
        images = table.filter(pc.equal(table.column("modality"), "image"))
        if images.num_rows:
            import pyarrow as pa

            no_position = pa.nulls(images.num_rows)
            self._candidates(pa.table([images.column("uri"), images.column("label"), images.column("score"),
                                       no_position, no_position], names=COLUMNS["frames"]))

    def _timed(self, name: str, table: pa.Table) -> None:
        import pyarrow.compute as pc

        if "seconds" in table.column_names:
            self.slowest[name].add(table.select(["uri", "modality", "seconds"])
                                   .filter(pc.is_valid(table.column("seconds"))))

    def _candidates(self, table: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        schema = pa.schema([("uri", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                            ("frame_index", pa.int64()), ("timestamp_s", pa.float64())])
        self.least_confident.add(table.cast(schema).filter(pc.is_valid(table.column("score"))))

    def candidates(self) -> list[dict]:
        return self.least_confident.to_pylist()


def _value_counts(column) -> tuple[list, list]:
    counted = column.value_counts().to_pylist()
    return [entry["values"] for entry in counted], [entry["counts"] for entry in counted]


def figures_of_tables(tables: dict[str, pa.Table], thumbnails: int = THUMBNAILS) -> ReportFigures:
    """The figures of tables already in memory (what `read_run_tables` returns)."""
    figures = ReportFigures(thumbnails)
    for name in ("predictions", "errors", "skipped", "frames"):
        if name in tables:
            figures.add(name, tables[name])
    return figures


def read_figures(output_uri: str, run_date: str, thumbnails: int = THUMBNAILS) -> ReportFigures:
    """The figures of one date's partitions, read as a stream (the columns the report
    uses, a batch at a time)."""
    figures = ReportFigures(thumbnails)
    for name, columns in COLUMNS.items():
        for batch in _date_batches(output_uri, name, run_date, columns):
            figures.add(name, batch)
    return figures


def _date_batches(output_uri: str, name: str, run_date: str, columns: list[str]) -> Iterable:
    """The date's partition of a table (a Delta table's, or a Parquet folder's in the earlier
    layout), batch by batch; nothing without such a table."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    from jobs.storage.delta import open_table

    table = open_table(parse_uri(output_uri).as_prefix().join(name))
    if table is not None:
        dataset = table.to_pyarrow_dataset()
        return dataset.to_batches(columns=[c for c in columns if c in dataset.schema.names],
                                  filter=pads.field("run_date") == run_date, **_one_at_a_time())
    location = parse_uri(output_uri).join(name, f"run_date={run_date}")
    fs = filesystem_for(location)
    if fs.get_file_info(location.fs_path).type != pafs.FileType.Directory:
        return []
    dataset = pads.dataset(location.fs_path, filesystem=fs, format="parquet")
    return dataset.to_batches(columns=[c for c in columns if c in dataset.schema.names], **_one_at_a_time())


def _one_at_a_time() -> dict:
    import pyarrow.dataset as pads

    return {**READAHEAD, "fragment_scan_options": pads.ParquetFragmentScanOptions(pre_buffer=False)}
