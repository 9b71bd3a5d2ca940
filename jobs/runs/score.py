"""The scoring runner: a score spec to a Ray Data batch-inference pipeline.

Data flow: a driver thread lists the input prefix (every object, paged) into
`_staging/<run>/listing/` (Parquet files of one listing page, then twice as large each, up
to 100,000 objects) while one Ray Data run reads those files as they are written
(`listing_feed`) in work units (`work_units`: a unit is a batch of images, or one video
or audio file) -> the classifier actors (`scoring_pipeline`), which start while the
driver still lists: per unit, fetch+decode (per-object try/except: bad objects become
error rows; videos and audio expand to one row per sampled frame / window), the model
(loaded once per actor, large batches), and the unit's rows written as Parquet under
`_staging/<run>/scored/` -> commit through the run lifecycle (`jobs.runs`, mapping in
`jobs.runs.score_commit`, streamed a window of staged rows at a time): the task's example
table (`predictions` or `frames`), its per-object table for multi-example media
(`videos`, `files`) and `errors`, each one Delta commit, and `runs/<run_id>/summary.json`.
Every listed object lands in exactly one of the example table or errors, and the commit
checks it against the listing files.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from jobs.errors import JobFailedError, MediaJobsError
from jobs.models.store import load_keras_model, prepare_model
from jobs.models.task_config import task_config_from_metadata
from jobs.nightly.routes import media_of_task
from jobs.runs.lifecycle import Run
from jobs.runs.progress import report
from jobs.runs.resources import actor_pool_options
from jobs.runs.run_metrics import record_objects, record_pace
from jobs.runs.score_commit import PARTIAL, SCORED, commit_run, listing_files, staged_schema
from jobs.runs.work_units import block_objects, objects_of, units_dataset
from jobs.storage.contract import now_utc
from jobs.storage.objects import filesystem_for, list_objects, needs_folders, parse_uri
from jobs.storage.outage import retry_while_unavailable, store_outage
from jobs.workers.decoding import EXAMPLE, fetch_and_decode, isolation_enabled
from jobs.workers.metrics import BLOCK_MODEL_SECONDS, EXAMPLES_SCORED, record

if TYPE_CHECKING:
    from jobs.spec.kinds import ScoreSpec

# Batches each classifier actor runs at once (threads): one batch's decoding and model
# call overlap the storage waits of the other.
CALLS_PER_ACTOR = 2


class BatchClassifier:
    """A Ray Data actor: loads the model once; per call, fetches and decodes a work unit's
    objects (`jobs.runs.work_units`), classifies them, and stages the rows as Parquet itself.

    Error rows pass through with their error, so the staged files carry every object to
    the commit step. Writing here, not in a `write_parquet` stage, keeps scored rows out of
    the object store and needs no write tasks: each write task wanted a worker process,
    which Ray started when the first block was ready, on the cores the actors held (the
    last write of a short video job waited 2.6 s for its process to start).
    """

    def __init__(self, model_uri: str, top_k: int, run_id: str, position_columns: tuple[str, ...],
                 staging_uri: str, cpus: float = 1, batch_size: int = 256, model_id: str | None = None,
                 trust_model_code: bool = False, task=None, isolate: bool = False, task_name: str = "") -> None:
        import ray

        self.task, self.isolate = task, isolate  # what decodes the objects, and where (decode children)
        if task is not None and isolate:  # the decode children start while TensorFlow loads
            from jobs.workers.decode_isolation import prestart

            prestart(task, CALLS_PER_ACTOR)
        import tensorflow as tf

        from jobs.workers.devices import enable_gpu_memory_growth

        enable_gpu_memory_growth(tf)
        limit_tf_threads(tf, cpus)
        # The version the driver resolved, checked here: one run's rows come from one model.
        self.model, metadata = load_keras_model(model_uri, model_id, trust_model_code)
        # A graph, not eager calls: 1.6x the images/s on CPU. reduce_retracing: batches
        # differ in size (the last of each block), and one shape-generic trace serves all.
        self.predict = tf.function(lambda examples: self.model(examples, training=False), reduce_retracing=True)
        self.class_names = metadata.class_names
        self.task_name = task_name or metadata.task or "unknown"  # the metrics' label
        self.model_id = metadata.model_id
        self.top_k = top_k
        self.run_id = run_id
        self.position_columns = position_columns
        self.schema = staged_schema(position_columns)
        self.node_id = ray.get_runtime_context().get_node_id()  # summary.json: which nodes scored
        self.batch_size = batch_size  # examples per model call; a block may hold more (video frames)
        self.staging = parse_uri(staging_uri)
        self.fs = filesystem_for(self.staging)
        if needs_folders(self.staging):
            self.fs.create_dir(self.staging.fs_path, recursive=True)

    def __call__(self, units: dict[str, np.ndarray]) -> dict[str, list]:
        batch = fetch_and_decode(objects_of(units), task=self.task, keep_errors=True, isolate=self.isolate)
        rows = self.classify(batch)
        objects = set(rows.column("uri").to_pylist())
        failed = {uri for uri, stage, error in zip(rows.column("uri").to_pylist(), rows.column("stage").to_pylist(),
                                                   rows.column("error").to_pylist()) if error and stage != PARTIAL}
        # What the driver's progress counts: this block's objects and those that failed.
        return {"staged_file": [self.stage(rows)], "rows": [rows.num_rows], "objects": [len(objects)],
                "failed": [len(failed)]}

    def stage(self, rows) -> str:
        """Write one block's rows under staging; the file's name is a digest of the block's
        objects and positions, so a block that Ray retries after losing an actor replaces its
        own file instead of adding a second copy."""
        import hashlib

        import pyarrow.parquet as pq

        digest = hashlib.sha256()
        for name in ("uri", *self.position_columns):
            digest.update(repr(rows.column(name).to_pylist()).encode())
        path = f"{self.staging.fs_path}/{digest.hexdigest()[:40]}.parquet"
        retry_while_unavailable(lambda: pq.write_table(rows, path, filesystem=self.fs),
                                f"writing scored rows to {self.staging.uri}/")
        return path

    def classify(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        from tasks.image_classifier import top_k

        errors = [str(e) if e else "" for e in batch["error"]]
        ok = np.array([not e for e in errors], dtype=bool)
        n = len(errors)
        rows: list[dict | None] = [None] * n
        probabilities: list[list[float] | None] = [None] * n
        if ok.any():
            examples = batch[EXAMPLE][ok]
            began = time.perf_counter()
            outputs = np.concatenate([self.predict(examples[i:i + self.batch_size]).numpy()
                                      for i in range(0, len(examples), self.batch_size)])
            record(BLOCK_MODEL_SECONDS, time.perf_counter() - began, task=self.task_name)
            record(EXAMPLES_SCORED, len(examples), task=self.task_name)
            for i, row, probs in zip(np.flatnonzero(ok), top_k(outputs, self.class_names, self.top_k), outputs):
                rows[i] = row
                p = [float(v) for v in probs]
                probabilities[i] = [1.0 - p[0], p[0]] if len(p) == 1 else p
        columns = {
            "uri": [str(u) for u in batch["uri"]],
            **{name: batch[name].tolist() for name in self.position_columns},
            "label": [r["label"] if r else None for r in rows],
            "score": [r["score"] if r else None for r in rows],
            "top_labels": [r["top_labels"] if r else None for r in rows],
            "top_scores": [r["top_scores"] if r else None for r in rows],
            "probabilities": probabilities,
            "object_info": [str(v) for v in batch["object_info"]],
            "model_id": [self.model_id] * n,
            "run_id": [self.run_id] * n,
            "stage": [str(s) if e else None for s, e in zip(batch["stage"], errors)],
            "error": [e or None for e in errors],
            "node_id": [self.node_id] * n,
            # Incremental runs list objects with their ETag: staged rows keep it, so a resumed
            # run can tell a finished object from one that changed since.
            "etag": [str(e) for e in batch["etag"]] if "etag" in batch else [None] * n,
            "scored_at": [now_utc()] * n,
        }
        return pa.Table.from_pydict(columns, schema=self.schema)


def scoring_pipeline(items, task, model_uri: str, spec, run_id: str, staging_uri: str,
                     objects_per_block: int, model_id: str | None = None):
    """The scoring pipeline over `items`: a list of dicts (uri, size, ...), or a dataset of
    work units of `block_objects` objects (`jobs.runs.work_units`). One Ray Data stage: the
    classifier actors fetch and decode each unit's objects (a bad object becomes an error
    row; a video or audio file expands to one row per sampled frame or window), classify
    them and stage the rows under `staging_uri`; decoded examples never cross the object
    store. Run it with `stage_all`.

    A unit is `objects_per_block` images, or one video (which expands to many frames; one
    per unit also spreads long ones best), and the classifier slices its model calls to
    `spec.batch_size` itself. (When the fetch was a stage of its own, fused with the
    classifier, Ray Data bundled the fused stage's input to the larger batch size of the
    two, counted in input rows: 40 videos went to a single actor while the other sat idle.)
    `model_uri` names one version (`ModelVersion.uri`), and each actor checks it loaded
    `model_id`.
    """
    import ray.data

    units = items if isinstance(items, ray.data.Dataset) else units_dataset(
        items, block_objects(task, objects_per_block))
    return units.map_batches(BatchClassifier,
                             fn_constructor_kwargs={"model_uri": model_uri, "top_k": spec.top_k, "run_id": run_id,
                                                    "position_columns": tuple(task.position_columns),
                                                    "staging_uri": staging_uri,
                                                    "cpus": spec.resources.cpus_per_actor,
                                                    "batch_size": spec.batch_size, "model_id": model_id,
                                                    "trust_model_code": getattr(spec, "trust_model_code", False),
                                                    "task": task, "isolate": isolation_enabled(),
                                                    "task_name": task.name},
                             batch_size=1, batch_format="numpy",
                             **actor_pool_options(spec.resources, CALLS_PER_ACTOR))


def stage_all(ds, progress: ScoringProgress | None = None) -> list[dict]:
    """Run a `scoring_pipeline` to the end; what each classifier call staged (one
    small record per block: `staged_file`, `rows`, and `staged_at`, when the driver heard
    of it). Each block's objects and failures are reported to `progress`."""
    records = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        arrived = time.time()
        records += [{"staged_file": str(file), "rows": int(rows), "staged_at": arrived}
                    for file, rows in zip(batch["staged_file"], batch["rows"])]
        if progress is not None:
            progress.add(int(np.sum(batch["objects"])), int(np.sum(batch["failed"])))
    return records


@dataclass
class ScoringProgress:
    """Objects scored (and failed) so far out of `total`, across a run's Ray Data runs."""

    total: int | None  # None until the listing has ended
    done: int = 0
    failed: int = 0

    def add(self, objects: int, failed: int) -> None:
        self.done, self.failed = self.done + objects, self.failed + failed
        report("scoring", self.done, self.total, self.failed)


def pace(records: list[dict], started: float) -> tuple[float, float]:
    """(seconds from `started` to the first staged block, rows per second from there to
    the last): start-up apart from the rate the pipeline then keeps."""
    if not records:
        return 0.0, 0.0
    arrivals = sorted(records, key=lambda r: r["staged_at"])
    first, last = arrivals[0]["staged_at"], arrivals[-1]["staged_at"]
    later_rows = sum(r["rows"] for r in arrivals[1:])
    return first - started, (later_rows / (last - first) if last > first else 0.0)


def limit_tf_threads(tf, cpus: float) -> None:
    """TensorFlow's thread pools sized to the CPUs this actor reserved.

    By default every actor's TensorFlow starts one thread per core of the machine, and
    actors sharing a node then fight over the cores with each other and with the decoding
    in the same process. Must run before TensorFlow's first op.
    """
    threads = max(1, int(round(cpus)))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        # One more inter-op thread than calls run at once (CALLS_PER_ACTOR), so concurrent
        # batches do not queue behind each other's graph.
        tf.config.threading.set_inter_op_parallelism_threads(threads + CALLS_PER_ACTOR - 1)
    except RuntimeError:
        pass  # TensorFlow already initialised in this process (a reused worker): keep its pools


@dataclass
class ScoreResult:
    run_id: str
    model_id: str
    listed: int
    predicted: int  # objects with predictions (a partly decoded video counts here)
    errors: int  # objects that failed entirely
    seconds: float
    predictions_uri: str  # the example table: predictions/ or frames/
    errors_uri: str
    summary_uri: str
    tables: dict[str, str] = field(default_factory=dict)
    examples: int = 0  # rows of the example table (frames, windows, images)
    partial: int = 0  # objects decoded only in part (also listed in errors/)
    first_rows_s: float = 0.0  # from the start of the run to the first block of scored rows
    steady_rows_per_s: float = 0.0  # staged rows (examples, error rows) per second after that

    @property
    def throughput(self) -> float:
        return self.listed / self.seconds if self.seconds else 0.0


def run_score(spec: ScoreSpec, echo=print) -> ScoreResult:
    """Score every object under `spec.input` with the model at `spec.model`.

    Raises:
        LockHeldError: another run is writing to the same output (exit 3).
        RunFencedError: the run lost its lease to another run before its commit (exit 1).
    """
    from tasks import get_task

    started = time.time()
    task_class = get_task(spec.task)
    tables = [name for name in task_class.output_tables if name] + ["errors"]
    # One run at a time per output: two would each replace the tables with their own.
    with Run(spec.output, tables, echo=echo, started=started) as run:
        return _score_run(spec, run, task_class, echo)


def _score_run(spec: ScoreSpec, run: Run, task_class, echo) -> ScoreResult:
    import pyarrow.parquet as pq

    from jobs.runs.listing_feed import StreamedListing

    model = prepare_model(spec.model, spec.trust_model_code)
    metadata = model.metadata
    if metadata.task != spec.task:
        raise MediaJobsError(f"task: the model at {spec.model} was trained for task {metadata.task!r}, "
                             f"not {spec.task!r}")
    task = task_class(**task_config_from_metadata(metadata, spec))
    prefix = parse_uri(spec.input).as_prefix().uri
    progress = ScoringProgress(None)

    def listed_all(count: int) -> None:  # in the listing's thread, once it has ended
        progress.total = count
        if count:
            echo(f"scoring {count} objects from {prefix} with model {metadata.model_id} (run {run.run_id})")

    # The listing goes to staging as it is read, a driver thread listing while the actors
    # start, and one Ray Data run reads its files as they are written (`listing_feed`): the
    # driver never holds the whole listing (10M objects at ~4 KiB each would be ~40 GB).
    with StreamedListing(list_objects(spec.input), run, on_listed=listed_all) as listing:
        if not listing.wait_started():
            raise MediaJobsError(f"input: no objects under {prefix}")
        if listing.listed is None:  # more than a page: the count comes when the listing ends
            echo(f"listing {prefix} while the actors start (model {metadata.model_id}, run {run.run_id})")
        run.events.add("scoring", objects=listing.listed)
        try:
            pipeline = scoring_pipeline(listing.dataset(block_objects(task, spec.batch_size)), task, model.uri,
                                        spec, run.run_id, run.staging.join(SCORED).uri,
                                        objects_per_block=spec.batch_size, model_id=model.model_id)
            records = stage_all(pipeline, progress)
        except Exception as exc:  # noqa: BLE001 - Ray wraps worker failures; an outage gets its own message
            if listing.error is not None:  # the listing failed, and with it the read of its files
                raise listing.error from None
            outage = store_outage(exc)
            if outage is None:
                raise
            raise JobFailedError(f"the object store stopped answering: {outage}. Nothing was committed: "
                                 f"{run.output.uri} holds no results of run {run.run_id}. Re-run the job when the "
                                 "store answers again.") from exc
        listed = listing.finished()
    first_rows_s, steady_rate = pace(records, run.started)

    committed = commit_run(run, task, media_of_task(spec.task), metadata.class_names)
    output = run.output
    tables = {name: output.join(name).uri + "/" for name in committed.tables}
    annotated: list[dict] = []
    if getattr(spec, "annotate", False) and committed.example_rows:
        from jobs.workers.annotation import ANNOTATED, annotate_videos

        echo("drawing predictions on the sampled frames (annotate: true)")
        fs = filesystem_for(output)
        sizes = {row["uri"]: row["size"] for path in listing_files(run)
                 for row in pq.read_table(path, filesystem=fs, columns=["uri", "size"]).to_pylist()}
        annotated = annotate_videos(tables[task.output_tables[0]], sizes, task, output.uri,
                                    parse_uri(spec.input).as_prefix().uri)
        tables[ANNOTATED] = output.join(ANNOTATED).uri + "/"
    seconds = time.time() - run.started
    result = ScoreResult(run.run_id, metadata.model_id, listed, committed.scored_objects,
                         committed.failed_objects, seconds, tables[task.output_tables[0]], tables["errors"],
                         output.join("runs", run.run_id, "summary.json").uri, tables, committed.example_rows,
                         committed.partial_objects, round(first_rows_s, 3), round(steady_rate, 2))
    run.finish({**asdict(result), "spec_name": spec.name, "task": spec.task, "input": spec.input,
                "annotated": annotated, "rows_per_node": committed.rows_per_node,
                "throughput_per_s": round(result.throughput, 2)})
    record_objects("score", spec.name, media_of_task(spec.task), scored=committed.scored_objects,
                   partial=committed.partial_objects, failed_stages=committed.failed_stages)
    record_pace("score", spec.name, result.steady_rows_per_s, seconds)
    return result
