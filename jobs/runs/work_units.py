"""Work units: what a scoring actor takes per call, a list of objects in one dataset row.

A unit is `block_objects` objects (a batch of images, or one video or audio file, which
expands to many examples) in one row's `objects` column (uri, size, etag, ...), and each
unit is a block of its own. Ray Data hands blocks to actors whole, so a unit per block
spreads the work evenly (before, a block of 100 videos went to one actor while the other
sat idle), and a unit read from a listing still being written reaches an actor as soon as
it is read (`jobs.runs.listing_feed`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

OBJECTS = "objects"
# Blocks of from_items units: at most this many (each then holds several units).
MAX_ITEM_BLOCKS = 1000


def block_objects(task, batch_size: int) -> int:
    """Objects per unit: `batch_size` images, or one video or audio file (it expands to
    many examples, and the actor slices its model calls itself)."""
    return batch_size if task.reads == "bytes" else 1


def units_of(table: pa.Table, per_unit: int) -> Iterator[pa.Table]:
    """`table`'s rows (one object each) as one-row tables, a unit of `per_unit` objects each."""
    import pyarrow as pa

    for start in range(0, table.num_rows, per_unit):
        chunk = table.slice(start, per_unit)
        objects = pa.StructArray.from_arrays([column.combine_chunks() for column in chunk.columns],
                                             names=chunk.column_names)
        offsets = pa.array([0, len(objects)], pa.int32())
        yield pa.table({OBJECTS: pa.ListArray.from_arrays(offsets, objects)})


def units_dataset(items: list[dict], per_unit: int):
    """`items` (one dict per object) as a dataset of units."""
    import ray.data

    units = [{OBJECTS: items[start:start + per_unit]} for start in range(0, len(items), per_unit)]
    return ray.data.from_items(units, override_num_blocks=max(1, min(len(units), MAX_ITEM_BLOCKS)))


def a_block_per_unit(ds):
    """`ds` (of units), with every unit a block of its own as soon as it is read.

    Ray Data collects what a read task yields into blocks of up to `target_max_block_size`
    (128 MiB), so a read of small rows gives nothing to the next stage until it ends. A
    target of one byte makes each row (one unit; a row is never split) a block, emitted as
    it is read. Set on this dataset's own context: it applies to the stages after it too,
    whose blocks are the actors' one-row records of what they staged."""
    ds.context.target_max_block_size = 1
    return ds


def objects_of(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The objects of a batch of units as columns (uri, size, etag, ...), one row per object."""
    objects = [obj for unit in batch[OBJECTS] for obj in unit]
    names = list(objects[0]) if objects else ["uri", "size"]
    return {name: np.array([obj[name] for obj in objects], dtype=object) for name in names}
