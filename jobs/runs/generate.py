"""The generation runner: a generate spec to images sampled from a trained GAN.

Data flow: index ranges of `batch_size` images (`from_items`: no read tasks, which on a
small cluster could wait forever behind the actors for a CPU) -> `ImageGenerator` actor pool (the
generator is loaded once per actor; image i comes from latent vector (seed, i), so its
bytes do not depend on batching or on which actor made it) -> one PNG per image under
`<output>/images/seed-<seed>/<index>.png`, written by the actor -> one index row per image
(`uri`, `seed`, `index`, `model_id`, `run_id`, `scored_at`) staged as Parquet -> commit
through the run lifecycle (`jobs.runs`): the check that every index 0..count-1 is there
exactly once, the `index` Delta table replaced in one commit, a `grid.png` of the first
`grid_size` images and `runs/<run_id>/summary.json`.

With a `quality` section each actor also runs the classifier over the images it has just
generated, from memory, and stages each image's top class and its probability beside its
index row (not in the table); the driver counts them into the summary's `quality` figures
(`tasks.sample_quality`).

Re-running writes the same bytes to the same keys, so a killed run is finished by
running it again.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from jobs.errors import JobFailedError, MediaJobsError, root_cause
from jobs.models.store import ModelVersion, fetch_model, fetched_metadata, load_keras_model, prepare_model
from jobs.runs.lifecycle import Run, TableWrite
from jobs.runs.progress import report
from jobs.runs.resources import actor_pool_options
from jobs.runs.staged_parts import stage_dataset
from jobs.storage.contract import SCORED_AT, now_utc
from jobs.storage.objects import filesystem_for, parse_uri, read_bytes, write_bytes

if TYPE_CHECKING:
    from jobs.spec.kinds import GenerateSpec

IMAGES, INDEX, GRID = "images", "index", "grid.png"
# Staged beside each index row when the samples are judged; counted, never committed.
QUALITY_CLASS, QUALITY_CONFIDENCE = "quality_class", "quality_confidence"


def _classifies_images(task_name: object) -> bool:
    """A classifier whose examples are images (stills or video frames) can judge samples."""
    from tasks.registry import definition, task_names

    return isinstance(task_name, str) and task_name in task_names() and definition(task_name).classifies_images


def image_key(seed: int, index: int) -> str:
    """The key of image `index` of `seed` under the output: sorted listings follow the index."""
    return f"{IMAGES}/seed-{seed}/{index:09d}.png"


def index_schema():
    import pyarrow as pa

    return pa.schema([("uri", pa.string()), ("seed", pa.int64()), ("index", pa.int64()),
                      ("model_id", pa.string()), ("run_id", pa.string()), ("scored_at", SCORED_AT())])


def staged_schema(judged: bool):
    """The index rows as staged: the table's columns, and each image's verdict when `judged`."""
    import pyarrow as pa

    schema = index_schema()
    if judged:
        schema = schema.append(pa.field(QUALITY_CLASS, pa.int64())).append(pa.field(QUALITY_CONFIDENCE, pa.float32()))
    return schema


@dataclass(frozen=True)
class QualityCheck:
    """The classifier a run judges its samples with, resolved once by the driver."""

    classifier: ModelVersion
    input_shape: tuple[int, ...]
    class_names: list[str]
    adaptation: str | None  # what is done to the images to fit the classifier, or None


def check_classifier(classifier: ModelVersion, image_shape, spec_uri: str) -> QualityCheck:
    """The quality check with this classifier, for generated images of `image_shape`.

    Raises:
        MediaJobsError: not an image classifier, or one that cannot judge such images.
    """
    from tasks.sample_quality import input_adaptation

    metadata = classifier.metadata
    if not _classifies_images(metadata.task):
        raise MediaJobsError(f"quality.classifier: the model at {spec_uri} was trained for task "
                             f"{metadata.task!r}; point it at the output of an image-classifier train job "
                             "trained on the images the GAN learned")
    input_shape = metadata.example_shape
    class_names = [str(name) for name in metadata.class_names]
    try:
        adaptation = input_adaptation(image_shape, input_shape)
    except ValueError as exc:
        height, width, channels = (int(v) for v in image_shape)
        raise MediaJobsError(f"quality.classifier: {exc}; train the classifier with model.input_shape: "
                             f"[{height}, {width}, {channels}] (the GAN's image_shape), or a size of the same "
                             "proportions") from None
    return QualityCheck(classifier, input_shape, class_names, adaptation)


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 1 or 3) to PNG bytes; the same pixels always give the same bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


class ImageGenerator:
    """A Ray Data actor: loads the generator once, turns batches of indices into PNGs in storage."""

    def __init__(self, model_uri: str, seed: int, output_uri: str, run_id: str, model_id: str | None = None,
                 trust_model_code: bool = False, quality: QualityCheck | None = None) -> None:
        import tensorflow as tf

        from jobs.workers.devices import enable_gpu_memory_growth
        from tasks.gan import load_generator

        enable_gpu_memory_growth(tf)
        local = fetch_model(model_uri, model_id)  # the version the driver resolved, checked
        metadata = fetched_metadata(local)
        self.generator = load_generator(str(local / getattr(metadata, "generator", "generator.keras")),
                                        trust_code=trust_model_code)
        self.latent_dim = int(self.generator.input_shape[-1])
        self.model_id = metadata.model_id
        self.seed, self.run_id = seed, run_id
        self.output = parse_uri(output_uri).as_prefix()
        self.quality, self.classifier = quality, None
        if quality is not None:  # the version the driver resolved and checked
            self.classifier, _ = load_keras_model(quality.classifier.uri, quality.classifier.model_id,
                                                  trust_code=trust_model_code)

    def __call__(self, batch: dict[str, np.ndarray]):
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa

        from tasks.gan import generate_images

        indices = [i for start, stop in zip(batch["start"], batch["stop"]) for i in range(int(start), int(stop))]
        images = generate_images(self.generator, [(self.seed, i) for i in indices], self.latent_dim)
        uris = [self.output.join(image_key(self.seed, i)).uri for i in indices]
        with ThreadPoolExecutor(max_workers=8) as pool:  # uploads are I/O bound
            list(pool.map(write_bytes, uris, [encode_png(image) for image in images]))
        n = len(indices)
        columns = {"uri": uris, "seed": [self.seed] * n, "index": indices, "model_id": [self.model_id] * n,
                   "run_id": [self.run_id] * n, "scored_at": [now_utc()] * n}
        if self.classifier is not None and self.quality is not None:
            from tasks.sample_quality import classify_samples

            columns[QUALITY_CLASS], columns[QUALITY_CONFIDENCE] = classify_samples(
                self.classifier, images, self.quality.input_shape)
        return pa.Table.from_pydict(columns, schema=staged_schema(self.classifier is not None))


@dataclass
class GenerateResult:
    run_id: str
    model_id: str
    count: int
    seed: int
    seconds: float
    images_uri: str
    index_uri: str
    grid_uri: str
    summary_uri: str
    quality: dict | None = None  # the classifier's figures (`tasks.sample_quality`), with a quality section

    @property
    def throughput(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def run_generate(spec: GenerateSpec, echo=print) -> GenerateResult:
    """Sample `spec.count` images from the GAN at `spec.model` into `spec.output`.

    Raises:
        LockHeldError: another run is writing to the same output (exit 3).
    """
    with Run(spec.output, [INDEX], echo=echo) as run:
        return _generate_run(spec, run, echo)


def _generate_run(spec, run: Run, echo) -> GenerateResult:
    import ray.data

    from tasks.gan import sample_grid_png

    output = run.output
    model = prepare_model(spec.model, spec.trust_model_code)
    metadata = model.metadata
    if metadata.task != spec.task:
        raise MediaJobsError(f"model: the model at {spec.model} was trained for task {metadata.task!r}; "
                             "a generate job needs the output of a train job with task: gan")
    quality = None
    if spec.quality is not None:
        from tasks.gan import DEFAULT_IMAGE_SHAPE

        image_shape = (metadata.task_config or {}).get("image_shape") or DEFAULT_IMAGE_SHAPE
        quality = check_classifier(_prepare_classifier(spec.quality.classifier, spec.trust_model_code), image_shape,
                                   spec.quality.classifier)
    echo(f"generating {spec.count} images with seed {spec.seed} from model {metadata.model_id} (run {run.run_id})")
    run.events.add("generating", images=spec.count)
    if quality is not None:
        echo(f"judging them with classifier {quality.classifier.model_id} ({len(quality.class_names)} classes)"
             + (f"; the images are {quality.adaptation}, as a score job reading their PNGs would"
                if quality.adaptation else ""))

    ranges = [{"start": start, "stop": min(start + spec.batch_size, spec.count)}
              for start in range(0, spec.count, spec.batch_size)]
    ds: ray.data.Dataset = ray.data.from_items(ranges, override_num_blocks=max(1, min(len(ranges), 1000)))
    ds = ds.map_batches(ImageGenerator, fn_constructor_kwargs={"model_uri": model.uri, "seed": spec.seed,
                                                               "output_uri": output.uri, "run_id": run.run_id,
                                                               "model_id": model.model_id,
                                                               "trust_model_code": spec.trust_model_code,
                                                               "quality": quality},
                        batch_size=1, batch_format="numpy", **actor_pool_options(spec.resources))
    generated = 0

    def on_block(block) -> None:
        nonlocal generated
        generated += block.num_rows
        report("generating", generated, spec.count)

    try:
        stage_dataset(ds, run.staging, filesystem_for(output), staged_schema(quality is not None), on_block)
    except Exception as exc:  # noqa: BLE001 - Ray wraps actor failures; show their root cause
        raise JobFailedError(f"generation failed: {root_cause(exc)}") from exc

    staged = run.staged_rows()
    run.check_accounting(range(spec.count), staged.to_table(columns=["index"]).column("index").to_pylist(),
                         what=f" ({spec.count} images)")
    figures = _count_quality(staged, quality, spec.quality) if quality is not None else None
    run.commit([TableWrite(INDEX, lambda: staged.to_table(columns=index_schema().names).sort_by("index"))])

    shown = min(spec.grid_size, spec.count)
    images = np.stack([_decode_png(read_bytes(output.join(image_key(spec.seed, i)).uri)) for i in range(shown)])
    grid_uri = output.join(GRID).uri
    write_bytes(grid_uri, sample_grid_png(images, columns=min(16, max(1, int(np.ceil(np.sqrt(shown))))), scale=2))

    result = GenerateResult(run.run_id, metadata.model_id, spec.count, spec.seed, time.time() - run.started,
                            output.join(IMAGES).uri + "/", output.join(INDEX).uri + "/", grid_uri,
                            output.join("runs", run.run_id, "summary.json").uri, figures)
    run.finish({**asdict(result), "spec_name": spec.name, "images_per_s": round(result.throughput, 2)})
    return result


def _prepare_classifier(uri: str, trust_code: bool) -> ModelVersion:
    """`prepare_model` of the quality classifier; its errors name the field they are about."""
    try:
        return prepare_model(uri, trust_code)
    except MediaJobsError as exc:
        if not exc.message.startswith("model: "):
            raise
        message = "quality.classifier: " + exc.message[len("model: "):].replace("point `model` at",
                                                                                "point `quality.classifier` at")
        raise type(exc)(message) from None


def _count_quality(staged, quality: QualityCheck, section) -> dict:
    """The quality figures of the staged verdicts, counted a batch at a time."""
    from tasks.sample_quality import QualityTally

    tally = QualityTally(len(quality.class_names), section.confident)
    for batch in staged.to_batches(columns=[QUALITY_CLASS, QUALITY_CONFIDENCE]):
        tally.add(batch.column(QUALITY_CLASS).to_numpy(), batch.column(QUALITY_CONFIDENCE).to_numpy())
    figures = tally.figures(quality.class_names, section.min_class_share)
    return {"classifier": quality.classifier.uri, "classifier_model_id": quality.classifier.model_id,
            "input_adaptation": quality.adaptation, **figures.as_summary()}


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(data)))
    return image[..., np.newaxis] if image.ndim == 2 else image
