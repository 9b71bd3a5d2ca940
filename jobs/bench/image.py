"""Image scoring, ours against the obvious alternatives, each from S3 JPEGs to Parquet in S3.

Every runner returns images per second over its whole run (listing to Parquet written),
so start-up costs count: a user waits for them too. The limit is measured in parts:
decode-only throughput D (fetch + our decode, all cores, nothing else) and model-only
throughput M (the model on decoded batches in memory, all cores); a pipeline that
overlapped them perfectly on these cores would reach 1 / (1/D + 1/M).
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import os
import time

import numpy as np

INPUT_SHAPE = (32, 32, 3)  # the CIFAR-10 CNN's input
BATCH = 256  # the score spec's default batch size, used by every runner


def score_job(task: str, model: str, source: str, output: str, **fields):
    """`mediajobs run` of a score spec with the spec defaults, as a user runs it; the ScoreResult."""
    from jobs.runs.score import run_score
    from jobs.spec.load import ScoreSpec, parse_spec

    spec = parse_spec({"version": 1, "kind": "score", "name": "bench-ours", "task": task, "model": model,
                       "input": source, "output": output, **fields}, "<bench>")
    assert isinstance(spec, ScoreSpec)  # kind: score, no routes
    return run_score(spec, echo=lambda message: None)


def ours(images: str, model: str, output: str) -> tuple[float, dict]:
    """Images per second of the score job over its whole run, and (`steady`) its rate
    from its first scored rows to its last, which leaves out start-up."""
    result = score_job("image-classifier", model, images, output, batch_size=BATCH)
    return result.listed / result.seconds, {"steady": result.steady_rows_per_s}


def in_process_decode(images: str, model: str, output: str) -> tuple[float, dict]:
    """`ours` with each object decoded in the scoring actor itself, as before decode children
    (`MEDIAJOBS_DECODE_ISOLATION=0`): what the isolation costs."""
    previous = os.environ.get("MEDIAJOBS_DECODE_ISOLATION")
    os.environ["MEDIAJOBS_DECODE_ISOLATION"] = "0"
    try:
        return ours(images, model, output)
    finally:
        if previous is None:
            del os.environ["MEDIAJOBS_DECODE_ISOLATION"]
        else:
            os.environ["MEDIAJOBS_DECODE_ISOLATION"] = previous


def seed_loop(images: str, model_uri: str, output: str, limit: int) -> float:
    """The seeds' loop: per image, download, decode with PIL, `model.predict` on a batch of one."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from jobs.models.store import load_keras_model
    from jobs.storage.objects import filesystem_for, list_objects, parse_uri, read_bytes

    began = time.perf_counter()
    model, metadata = load_keras_model(model_uri)
    rows = []
    for stored in itertools.islice(list_objects(images), limit):
        with Image.open(io.BytesIO(read_bytes(stored.uri))) as image:
            pixels = np.asarray(image.convert("RGB").resize(INPUT_SHAPE[:2][::-1]))
        probabilities = model.predict(pixels[np.newaxis], verbose=0)[0]
        rows.append({"uri": stored.uri, "label": metadata.class_names[int(np.argmax(probabilities))],
                     "score": float(np.max(probabilities))})
    target = parse_uri(output).join("predictions.parquet")
    pq.write_table(pa.Table.from_pylist(rows), target.fs_path, filesystem=filesystem_for(target))
    return len(rows) / (time.perf_counter() - began)


class _Predictor:
    """The batch-inference actor of both Ray Data peers (the docs' recipe; Anyscale's
    image-classification benchmark, `multimodal_inference_benchmarks/image_classification/
    ray_data_main.py`): load once, call the model on each batch of prepared images, as a
    graph (`tf.function`, as ours is and as the benchmark runs its torch model under
    `inference_mode`) rather than `model.predict` per batch. Rows keep their `key` column."""

    def __init__(self, model_uri: str, key: str) -> None:
        from jobs.bench.models import graph_model

        self.key = key
        self.predict, self.class_names = graph_model(model_uri)

    def __call__(self, batch: dict) -> dict:
        probabilities = self.predict(batch["image"]).numpy()
        return {self.key: batch[self.key], "label": self.class_names[probabilities.argmax(axis=1)],
                "score": probabilities.max(axis=1)}


def ray_data_plain(images: str, model_uri: str, output: str) -> float:
    """`read_images` -> `map_batches` actor pool -> `write_parquet`, the documented recipe."""
    import ray.data

    from jobs.storage.objects import filesystem_for, parse_uri

    began = time.perf_counter()
    source, target = parse_uri(images), parse_uri(output)
    ds = ray.data.read_images(source.fs_path, filesystem=filesystem_for(source), size=INPUT_SHAPE[:2],
                              mode="RGB", include_paths=True)
    # One actor, not one per core: two actors hold both CPUs of a 2-CPU cluster and the
    # read tasks never get one (seen: the run stalled).
    ds = ds.map_batches(_Predictor, fn_constructor_kwargs={"model_uri": model_uri, "key": "path"}, batch_size=BATCH,
                        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=max(1, _cpus() - 1)))
    ds.write_parquet(target.fs_path, filesystem=filesystem_for(target))
    seconds = time.perf_counter() - began
    return _rows(target) / seconds


def _deserialize_image(row: dict) -> dict:
    """The recipe's decode stage, a row at a time: PIL to RGB pixels (dropping the bytes)."""
    from PIL import Image

    image = Image.open(io.BytesIO(row.pop("bytes"))).convert("RGB")
    row["pixels"] = np.asarray(image)
    return row


def _transform_image(row: dict) -> dict:
    """The recipe's transform stage: to the model's input size (the benchmark's own
    transform resizes and normalises for its ResNet; ours is the CNN's 32x32)."""
    from PIL import Image

    pixels = row.pop("pixels")
    row["image"] = np.asarray(Image.fromarray(pixels).resize(INPUT_SHAPE[:2], Image.Resampling.BILINEAR))
    return row


def ray_data_recipe(images: str, model_uri: str, output: str) -> float:
    """Ray Data as Anyscale's multimodal benchmark writes it (Ray 2.50+): a table of URIs ->
    `with_column("bytes", download("uri"))` -> decode `map` -> transform `map` -> model actor
    pool `map_batches` -> `write_parquet`. The benchmark reads its URIs from a Parquet
    file; here they come from the same listing every runner does."""
    import ray.data
    from ray.data.expressions import download

    from jobs.storage.objects import filesystem_for, list_objects, parse_uri

    began = time.perf_counter()
    source, target = parse_uri(images), parse_uri(output)
    uris = [parse_uri(stored.uri).fs_path for stored in list_objects(images)]
    ds = (ray.data.from_items([{"uri": uri} for uri in uris])
          .with_column("bytes", download("uri", filesystem=filesystem_for(source)))
          .map(_deserialize_image)
          .map(_transform_image)
          # The benchmark's model actors each hold a GPU, not a CPU slot. Here, where the model
          # runs on the CPUs, one that held a CPU slot deadlocked the run on 2 CPUs (Ray 2.60):
          # `download` plans its reads in an actor of its own that holds the other slot, and
          # no task (the URI split, the reads, decode, resize) could start.
          .map_batches(_Predictor, fn_constructor_kwargs={"model_uri": model_uri, "key": "uri"}, batch_size=BATCH,
                       batch_format="numpy", num_cpus=0, concurrency=max(1, _cpus() - 1))
          .select_columns(["uri", "label", "score"]))
    ds.write_parquet(target.fs_path, filesystem=filesystem_for(target))
    return _rows(target) / (time.perf_counter() - began)


def tf_data(images: str, model_uri: str, output: str) -> float:
    """One process: list, `tf.data` GETs (parallel) -> `decode_jpeg` -> resize -> batch -> predict -> Parquet.

    With the advantages its own API offers, as ours takes them: the JPEG decoded at the
    largest DCT scale (`ratio` 2, 4 or 8) that keeps both sides at least the model's input,
    and the model called as a graph."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

    from jobs.bench.models import graph_model
    from jobs.storage.objects import filesystem_for, list_objects, parse_uri, read_sized

    began = time.perf_counter()
    predict, class_names = graph_model(model_uri)
    listed = list(list_objects(images))
    uris, sizes = [stored.uri for stored in listed], [stored.size for stored in listed]

    # TensorFlow has no S3 filesystem of its own any more (tensorflow-io does): the GET is
    # ours, the same one our fetch stage makes (obstore), so the ratio compares pipelines.
    def fetch(uri, size):
        return bytes(read_sized(uri.numpy().decode(), int(size.numpy())))

    def decoder(data, ratio: int):
        return lambda: tf.io.decode_jpeg(data, channels=3, ratio=ratio)

    def load(uri, size):
        data = tf.py_function(fetch, [uri, size], tf.string)
        shorter = tf.reduce_min(tf.io.extract_jpeg_shape(data)[:2])
        side = min(INPUT_SHAPE[:2])  # ratio 2**k while the shorter side stays >= side * 2**k
        scale = sum(tf.cast(shorter >= side * 2 ** k, tf.int32) for k in (1, 2, 3))
        pixels = tf.switch_case(scale, [decoder(data, ratio) for ratio in (1, 2, 4, 8)])
        return uri, tf.cast(tf.image.resize(pixels, INPUT_SHAPE[:2], method="area"), tf.uint8)

    dataset = (tf.data.Dataset.from_tensor_slices((uris, sizes)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
               .batch(BATCH).prefetch(tf.data.AUTOTUNE))
    names: list[str] = []
    labels, scores = [], []
    for batch_uris, pixels in dataset:
        probabilities = predict(pixels).numpy()
        names.extend(u.decode() for u in batch_uris.numpy())
        labels.extend(class_names[probabilities.argmax(axis=1)])
        scores.extend(probabilities.max(axis=1).tolist())
    target = parse_uri(output).join("predictions.parquet")
    pq.write_table(pa.table({"uri": names, "label": labels, "score": scores}), target.fs_path,
                   filesystem=filesystem_for(target))
    return len(names) / (time.perf_counter() - began)


def decode_only(images: str, chunk: int = 128) -> float:
    """D: fetch + our decoder over every image, one process per core, nothing else."""
    from jobs.storage.objects import list_objects

    objects = [(o.uri, o.size) for o in list_objects(images)]
    chunks = [objects[i:i + chunk] for i in range(0, len(objects), chunk)]
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        pool.map(_decode_chunk, chunks[:2])  # warm up: imports in each process
        began = time.perf_counter()
        decoded = sum(pool.map(_decode_chunk, chunks))
    return decoded / (time.perf_counter() - began)


def _decode_chunk(chunk: list[tuple[str, int]]) -> int:
    from jobs.workers.decoding import fetch_and_decode
    from tasks.image_classifier import ImageClassifier

    batch = {"uri": np.array([u for u, _ in chunk], dtype=object), "size": np.array([s for _, s in chunk])}
    return len(fetch_and_decode(batch, task=ImageClassifier(INPUT_SHAPE), keep_errors=False)["uri"])


def model_only(model_uri: str, seconds: float = 5.0) -> float:
    """M: the model on decoded batches already in memory, all cores (as our actors call it)."""
    from jobs.bench.models import graph_model

    predict, _ = graph_model(model_uri)
    pixels = np.random.default_rng(0).integers(0, 256, (BATCH, *INPUT_SHAPE), dtype=np.uint8)
    predict(pixels)
    began, count = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        predict(pixels).numpy()
        count += BATCH
    return count / (time.perf_counter() - began)


def _cpus() -> int:
    import ray

    return int(ray.cluster_resources().get("CPU", 1))


def ideal(decode: float, model: float) -> float:
    return 1.0 / (1.0 / decode + 1.0 / model)


def _rows(target) -> int:
    import pyarrow.dataset as pads

    from jobs.storage.objects import filesystem_for

    return pads.dataset(target.fs_path, filesystem=filesystem_for(target), format="parquet").count_rows()
