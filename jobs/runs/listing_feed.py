"""A plain run's listing, handed to Ray Data while it is still being listed.

The driver lists the input in a thread and stages the listing as it goes (`stage_listing`:
the first file one page of 1,000 objects, each next one twice as large, up to 100,000);
the pipeline reads those files as they appear, so the classifier actors start, import
TensorFlow and load the model while the driver is still listing, and one actor pool
serves the whole listing (before, the listing ended first, and each 100,000 objects were
a Ray Data run of their own, with its own actors).

    driver thread:  list_objects -> stage_listing -> part files in _staging/<run>/listing/
                                                        | each path, as it is written
                                                        v
    ListingParts (actor, no CPU):  the paths so far, and whether the listing ended (or failed)
                                                        | part(n): waits for the n-th path
                                                        v
    ListingPartsSource (one read task, no CPU): reads each part file -> work units, a block each -> the actors

The read task asks for parts by number and reads them from staging, so a read task Ray
retries reads the same parts again, into the same blocks (whose staged files, named by
their objects, replace themselves). The commit still reads the listing files themselves,
so every listed object is accounted for as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from jobs.errors import MediaJobsError
from jobs.runs.work_units import a_block_per_unit, units_of

if TYPE_CHECKING:
    from jobs.runs.lifecycle import Run
    from jobs.storage.objects import StoredObject

# The first listing file: one listing page, so scoring can start after the first page.
FIRST_PART_OBJECTS = 1_000


class ListingFailedError(MediaJobsError):
    """The listing stopped: the read task's side of the driver's own error."""


class ListingParts:
    """A Ray actor (async, no CPU): the listing files written so far, in order."""

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._ended = False
        self._failure: str | None = None
        self._changed = asyncio.Condition()

    async def add(self, path: str) -> None:
        async with self._changed:
            self._paths.append(path)
            self._changed.notify_all()

    async def end(self, failure: str | None = None) -> None:
        async with self._changed:
            self._ended, self._failure = True, failure
            self._changed.notify_all()

    async def part(self, number: int) -> str | None:
        """The path of listing file `number` once it is written; None when the listing ended
        with fewer files. Raises ListingFailedError once the listing failed."""
        async with self._changed:
            await self._changed.wait_for(lambda: number < len(self._paths) or self._ended)
            if self._failure is not None:
                raise ListingFailedError(self._failure)
            return self._paths[number] if number < len(self._paths) else None


class ListingPartsSource(Datasource):
    """A Ray Data datasource over the listing files of a run still listing: one read task
    that yields the listed objects (uri, size, etag) in work units of `per_block`."""

    def __init__(self, parts, folder_uri: str, per_block: int) -> None:
        self.parts, self.folder_uri, self.per_block = parts, folder_uri, per_block

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context=None) -> list:
        # One task: it only relays small files, and one keeps the blocks in listing order.
        return [ReadTask(self._read, BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None))]

    def estimate_inmemory_data_size(self) -> int | None:
        return None  # unknown until listed

    def _read(self) -> Iterator:
        import pyarrow.parquet as pq
        import ray

        from jobs.storage.objects import filesystem_for, parse_uri
        from jobs.storage.outage import retry_while_unavailable

        fs = filesystem_for(parse_uri(self.folder_uri))
        number = 0
        while (path := ray.get(self.parts.part.remote(number))) is not None:
            table = retry_while_unavailable(lambda path=path: pq.read_table(path, filesystem=fs),
                                            f"reading the listing {self.folder_uri}")
            yield from units_of(table, self.per_block)
            number += 1


class StreamedListing:
    """The driver's side: lists `objects` into the run's staging in a thread, feeding each
    file to the pipeline as it is written.

        with StreamedListing(list_objects(uri), run) as listing:
            if not listing.wait_started(): ...   # nothing listed
            ds = listing.dataset(per_block)      # read by the scoring pipeline
            ...
            listed = listing.finished()          # the whole listing staged
    """

    def __init__(self, objects: Iterable[StoredObject], run: Run,
                 on_listed: Callable[[int], None] | None = None) -> None:
        import ray

        self.run = run
        self.parts: Any = ray.remote(num_cpus=0)(ListingParts).remote()  # an actor handle
        self.listed: int | None = None  # set when the listing ended
        self.error: BaseException | None = None
        self._on_listed = on_listed
        self._first_part = threading.Event()
        self._stop = threading.Event()
        # The listing's progress reports go where the caller's go (a context variable).
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._list, objects),
                                        name="mediajobs-listing", daemon=True)
        self._thread.start()

    def __enter__(self) -> StreamedListing:
        return self

    def __exit__(self, *exc_info) -> None:
        import ray

        self._stop.set()
        self._thread.join()
        ray.kill(self.parts)

    def wait_started(self) -> bool:
        """Wait for the first listing file (or the listing's end); False if nothing was listed.
        Raises what the listing raised."""
        self._first_part.wait()
        if self.error is not None:
            raise self.error
        return self.listed != 0

    def dataset(self, per_block: int):
        """The listed objects as a Ray Data dataset, read as the listing goes."""
        import ray.data

        from jobs.runs.score_commit import LISTING

        source = ListingPartsSource(self.parts, self.run.staging.join(LISTING).uri, per_block)
        # No CPU: the read task only relays listing files, and a CPU slot would be one the
        # actors cannot have.
        return a_block_per_unit(ray.data.read_datasource(source, num_cpus=0, override_num_blocks=1))

    def finished(self) -> int:
        """The number of objects listed, once the listing has ended. Raises what it raised."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.listed is not None  # set by a listing that ended without an error
        return self.listed

    def _list(self, objects: Iterable[StoredObject]) -> None:
        import ray

        from jobs.runs.score_commit import stage_listing

        try:
            self.listed = stage_listing(self._until_stopped(objects), self.run, first_rows=FIRST_PART_OBJECTS,
                                        on_file=self._file_written)
            if self._on_listed is not None:
                self._on_listed(self.listed)
            ray.get(self.parts.end.remote())
        except BaseException as exc:  # noqa: BLE001 - handed to the driver's main thread, raised there
            self.error = exc
            ray.get(self.parts.end.remote(failure=str(exc) or type(exc).__name__))
        finally:
            self._first_part.set()

    def _file_written(self, path: str) -> None:
        import ray

        ray.get(self.parts.add.remote(path))
        self._first_part.set()

    def _until_stopped(self, objects: Iterable[StoredObject]) -> Iterator[StoredObject]:
        for obj in objects:
            if self._stop.is_set():
                raise _ListingStopped()
            yield obj


class _ListingStopped(Exception):
    """The scoring ended first (it failed): the listing thread stops."""
