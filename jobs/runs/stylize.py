"""The stylization runner: a stylize spec to every content image in every style.

Data flow: resolve the module (a style-transfer model version -> its `stylizer/`;
an s3:// or local SavedModel directory; a TF Hub handle) -> fetch and decode the style
images on the driver (job parameters, not inputs: a bad one stops the job before any
work) -> list the content images -> `from_items` -> `BatchStylizer` actor pool (module
loaded once per actor, an s3:// module downloaded once per process): per batch, fetch
and decode each content image at its own size, group the images by size, stylize each
group in every style, measure each result's content and style losses (modules that can:
our exported stylizers), write each result under `<output>/images/<style>/<content key>`
-> one staged row per (content, style) result or per failed content -> commit through the
run lifecycle (`jobs.runs`): every content image in `results` once per style or in
`errors` once, each Delta table replaced in one commit, a contact sheet (content | result
per style) and `runs/<run_id>/summary.json`.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from jobs.errors import JobFailedError, MediaJobsError, root_cause
from jobs.models.stylizer_source import StylizerSource, check_stylizer, load_module, resolve_stylizer
from jobs.reports.contact_sheet import contact_sheet_png
from jobs.runs.lifecycle import Run, TableWrite
from jobs.runs.progress import report
from jobs.runs.resources import actor_pool_options
from jobs.runs.staged_parts import stage_dataset
from jobs.storage.contract import ERRORS_SCHEMA, SCORED_AT, now_utc
from jobs.storage.objects import (
    StoredObject,
    filesystem_for,
    list_objects,
    parse_uri,
    read_bytes,
    write_bytes,
)
from jobs.workers.annotation import output_key_for
from jobs.workers.decode_isolation import task_blob
from jobs.workers.decoding import decode_all, fetched_in_order, give_back, isolation_enabled

if TYPE_CHECKING:
    from jobs.spec.kinds import StylizeSpec

__all__ = ["StylizerSource", "resolve_stylizer", "run_stylize"]

IMAGES, RESULTS, ERRORS, SHEET = "images", "results", "errors", "contact_sheet.png"
_EXTENSIONS = {"png": "png", "jpeg": "jpg"}


def style_names(uris: list[str]) -> list[str]:
    """A folder name per style image: its file stem (escaped like content keys), made unique
    with the position when needed; the positions alone if stems still meet."""
    stems = [output_key_for(os.path.splitext(uri.rstrip("/").rsplit("/", 1)[-1])[0], "") for uri in uris]
    names = [stem if stems.count(stem) == 1 else f"{i}-{stem}" for i, stem in enumerate(stems)]
    return names if len(set(names)) == len(names) else [f"style-{i}" for i in range(len(uris))]


def output_key(content_uri: str, input_prefix: str, style_name: str, image_format: str) -> str:
    """`images/<style>/<content key below the input>`, never outside the output prefix.

    The content key is escaped (`output_key_for`); one that does not end in the format's
    extension gets `~.jpg` or `~.png` appended, not `.jpg`: `x.png` and `x.png.jpg` would
    otherwise meet, and no escaped key holds `~.`.
    """
    key = output_key_for(content_uri, input_prefix)
    extension = _EXTENSIONS[image_format]
    if not key.lower().endswith("." + extension):
        key += "~." + extension
    return f"{IMAGES}/{style_name}/{key}"


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    import cv2

    flag = [cv2.IMWRITE_JPEG_QUALITY, 92] if image_format == "jpeg" else []
    ok, encoded = cv2.imencode("." + _EXTENSIONS[image_format], image[..., ::-1], flag)
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as {image_format}")
    return encoded.tobytes()


def staged_schema():
    import pyarrow as pa

    return pa.schema([("content_uri", pa.string()), ("style_uri", pa.string()), ("output_uri", pa.string()),
                      ("height", pa.int32()), ("width", pa.int32()), ("seconds", pa.float32()),
                      ("content_loss", pa.float32()), ("style_loss", pa.float32()), ("model_id", pa.string()),
                      ("run_id", pa.string()), ("stage", pa.string()),
                      ("error", pa.string()), ("scored_at", SCORED_AT())])


RESULT_COLUMNS = ["content_uri", "style_uri", "output_uri", "height", "width", "seconds", "content_loss",
                  "style_loss", "model_id", "run_id", "scored_at"]
LOSS_COLUMNS = ("content_loss", "style_loss")


class BatchStylizer:
    """A Ray Data actor: loads the module once; stylizes batches of content images in every style."""

    def __init__(self, source: StylizerSource, styles: list[np.ndarray], style_uris: list[str], run_id: str,
                 output_uri: str, input_prefix: str, image_format: str, batch_size: int,
                 max_side: int | None, trust_model_code: bool = False) -> None:
        import tensorflow as tf

        from jobs.workers.devices import enable_gpu_memory_growth

        enable_gpu_memory_growth(tf)
        self.module = load_module(source, trust_model_code)
        self.model_id, self.run_id = source.model_id, run_id
        self.styles, self.style_uris, self.names = styles, style_uris, style_names(style_uris)
        self.output, self.input_prefix = parse_uri(output_uri).as_prefix(), input_prefix
        self.image_format, self.batch_size, self.max_side = image_format, batch_size, max_side

    def __call__(self, batch: dict[str, np.ndarray]):
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa

        uris = [str(u) for u in batch["uri"]]
        rows: list[dict] = []
        images: dict[str, np.ndarray] = {}
        pending = iter(uris)
        with tempfile.TemporaryDirectory(prefix="mediajobs-stylize-") as spool:
            for group in fetched_in_order(uris, [int(s) for s in batch["size"]], "bytes", spool, group=len(uris)):
                fetched = [(next(pending), data, error) for (data, error, _), _ in group]
                held = sum(held for _, held in group)
                del group
                try:
                    decoded = iter(_decode([data for _, data, error in fetched if not error]))
                finally:
                    give_back(held)
                for uri, _, error in fetched:
                    image, stage, reason = (None, "read", error) if error else next(decoded)
                    if image is None:
                        rows.append(self._error(uri, stage, reason))
                    else:
                        images[uri] = image
                del fetched
        by_size: dict[tuple[int, int], list[str]] = defaultdict(list)
        for uri, image in images.items():
            by_size[image.shape[:2]].append(uri)  # one module call per size: shapes must match in a batch
        writes: list[tuple[str, bytes]] = []
        for (height, width), group in by_size.items():
            try:
                outputs = self._stylize(np.stack([images[u] for u in group]))
            except Exception as exc:  # noqa: BLE001 - one bad group must not kill the job; recorded per image
                rows.extend(self._error(u, "stylize", f"{type(exc).__name__}: {exc}") for u in group)
                continue
            for style_index, (stylized, seconds, losses) in enumerate(outputs):
                for index, (uri, image) in enumerate(zip(group, stylized)):
                    key = output_key(uri, self.input_prefix, self.names[style_index], self.image_format)
                    writes.append((self.output.join(key).uri, encode_image(image, self.image_format)))
                    rows.append({"content_uri": uri, "style_uri": self.style_uris[style_index],
                                 "output_uri": self.output.join(key).uri, "height": height, "width": width,
                                 "seconds": seconds / len(group),
                                 **{name: None if losses is None else float(losses[i][index])
                                    for i, name in enumerate(LOSS_COLUMNS)}})
        failed_writes = set()
        with ThreadPoolExecutor(max_workers=8) as pool:
            for (uri, _), outcome in zip(writes, pool.map(_write, writes)):
                if outcome:
                    failed_writes.add(uri)
        if failed_writes:  # a content image whose results are not all written is an error, whole
            broken = {r["content_uri"] for r in rows if r.get("output_uri") in failed_writes}
            rows = [r for r in rows if r["content_uri"] not in broken]
            rows += [self._error(u, "write", "could not write a stylized image") for u in sorted(broken)]
        n = len(rows)
        columns = {name: [r.get(name) for r in rows] for name in staged_schema().names}
        columns["model_id"], columns["run_id"] = [self.model_id] * n, [self.run_id] * n
        columns["scored_at"] = [now_utc()] * n
        return pa.Table.from_pydict(columns, schema=staged_schema())

    def _stylize(self, contents: np.ndarray) -> list[tuple[np.ndarray, float, tuple | None]]:
        """The contents in every style: [(uint8 (N, H, W, 3), seconds, losses)], at the contents'
        size; losses are (content losses, style losses), measured at the size stylized (see
        `max_side`), or None when the module cannot measure them."""
        import cv2

        from tasks.style_transfer import result_losses, stylize_batch

        height, width = contents.shape[1:3]
        scale = min(1.0, self.max_side / max(height, width)) if self.max_side else 1.0
        if scale < 1.0:  # stylize smaller, return at the content's size
            small = (max(1, round(width * scale)), max(1, round(height * scale)))
            contents = np.stack([cv2.resize(c, small, interpolation=cv2.INTER_AREA) for c in contents])
        results = []
        for style in self.styles:
            began = time.perf_counter()
            stylized = measured = stylize_batch(self.module, contents, style, self.batch_size)
            if scale < 1.0:
                stylized = np.stack([cv2.resize(s, (width, height), interpolation=cv2.INTER_LINEAR) for s in stylized])
            seconds = time.perf_counter() - began
            results.append((stylized, seconds, result_losses(self.module, contents, style, measured, self.batch_size)))
        return results

    @staticmethod
    def _error(uri: str, stage: str, reason: str) -> dict:
        return {"content_uri": uri, "stage": stage, "error": reason}


def _decode(contents: list) -> list[tuple[np.ndarray | None, str, str]]:
    """Content images at their own size, decoded in a decode child (`jobs.workers.decode_isolation`)."""
    from tasks.style_transfer import FullImageDecoder

    decoder = FullImageDecoder()
    return [(None, stage, reason) if decoded is None else (np.asarray(decoded.examples[0]), "", "")
            for decoded, stage, reason, _ in decode_all(decoder, task_blob(decoder) if isolation_enabled() else None,
                                                        contents)]


def _write(item: tuple[str, bytes]) -> str:
    try:
        write_bytes(*item)
        return ""
    except OSError as exc:
        return str(exc)


def load_styles(uris: list[str]) -> list[np.ndarray]:
    """The style images, decoded and resized to the module's 256x256 style input.

    Raises:
        MediaJobsError: naming the style (`styles[i]`) that cannot be read or decoded.
    """
    import cv2

    from tasks.media import MediaDecodeError
    from tasks.style_transfer import HUB_STYLE_SIZE, decode_full

    styles = []
    for i, uri in enumerate(uris):
        try:
            image = decode_full(read_bytes(uri))
        except MediaDecodeError as exc:
            raise MediaJobsError(f"styles[{i}]: {uri} is not a usable image ({exc.reason}); "
                                 "use a JPEG or PNG") from None
        except OSError as exc:
            raise MediaJobsError(f"styles[{i}]: cannot read {uri} ({exc}); check the URI") from None
        shrinking = max(image.shape[:2]) > HUB_STYLE_SIZE
        styles.append(cv2.resize(image, (HUB_STYLE_SIZE, HUB_STYLE_SIZE),
                                 interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR))
    return styles


@dataclass
class StylizeResult:
    run_id: str
    model_id: str
    contents: int
    results: int
    errors: int
    seconds: float
    tables: dict[str, str] = field(default_factory=dict)
    # Means over the results; None when the module cannot measure them (see `result_losses`).
    content_loss: float | None = None
    style_loss: float | None = None


def run_stylize(spec: StylizeSpec, echo=print) -> StylizeResult:
    """Stylize every image under `spec.input` in every style of `spec.styles`.

    Raises:
        LockHeldError: another run is writing to the same output (exit 3).
    """
    with Run(spec.output, [RESULTS, ERRORS], echo=echo) as run:
        return _stylize_run(spec, run, echo)


def _stylize_run(spec, run: Run, echo) -> StylizeResult:
    import pyarrow.compute as pc
    import ray.data

    from tasks.image_classifier import IMAGE_SUFFIXES

    output = run.output
    source = resolve_stylizer(spec.model, spec.task)
    check_stylizer(source, spec.trust_model_code)  # fail before any work
    styles = load_styles(spec.styles)
    input_prefix = parse_uri(spec.input).as_prefix()
    objects = list(list_objects(input_prefix.uri, IMAGE_SUFFIXES))
    if not objects:
        raise MediaJobsError(f"input: no images under {input_prefix.uri} (suffixes {', '.join(IMAGE_SUFFIXES)})")
    echo(f"stylizing {len(objects)} images from {input_prefix.uri} in {len(styles)} styles with {source.model_id} "
         f"(run {run.run_id})")
    run.events.add("stylizing", objects=len(objects), styles=len(styles))

    per_block = 8
    ds: ray.data.Dataset = ray.data.from_items([{"uri": o.uri, "size": o.size} for o in objects],
                             override_num_blocks=max(2, min(len(objects) // per_block, 1000)))
    ds = ds.map_batches(
        BatchStylizer, batch_size=per_block, batch_format="numpy", **actor_pool_options(spec.resources),
        fn_constructor_kwargs={"source": source, "styles": styles, "style_uris": list(spec.styles),
                               "run_id": run.run_id, "output_uri": output.uri, "input_prefix": input_prefix.uri,
                               "image_format": spec.image_format, "batch_size": spec.batch_size,
                               "max_side": spec.max_side, "trust_model_code": spec.trust_model_code})
    results = failed = 0  # a failed content image is one row, standing for all its styles

    def on_block(block) -> None:
        nonlocal results, failed
        errors = pc.sum(pc.is_valid(block["error"])).as_py() or 0
        results, failed = results + block.num_rows - errors, failed + errors
        report("stylizing", results + failed * len(styles), len(objects) * len(styles), failed)

    try:
        stage_dataset(ds, run.staging, filesystem_for(output), staged_schema(), on_block)
    except Exception as exc:  # noqa: BLE001 - Ray wraps actor failures (e.g. the module not loading)
        raise JobFailedError(f"stylize failed: {_reason(exc)}") from exc

    staged = run.staged_rows()
    is_result, is_error = pc.field("error").is_null(), pc.field("error").is_valid()
    _check_accounting(run, staged, {o.uri for o in objects}, list(spec.styles))
    listed = {o.uri: o for o in objects}
    run.commit([TableWrite(RESULTS, lambda: staged.to_table(columns=RESULT_COLUMNS, filter=is_result)),
                TableWrite(ERRORS, lambda: error_rows(staged.to_table(filter=is_error), listed))])
    results = staged.to_table(columns=RESULT_COLUMNS, filter=is_result)
    errors = staged.count_rows(filter=is_error)

    tables = {"images": output.join(IMAGES).uri + "/", "results": output.join(RESULTS).uri + "/",
              "errors": output.join(ERRORS).uri + "/"}
    if results.num_rows:
        write_bytes(output.join(SHEET).uri, contact_sheet_png(results, list(spec.styles), styles))
        tables["contact sheet"] = output.join(SHEET).uri
    result = StylizeResult(run.run_id, source.model_id, len(objects), results.num_rows, errors,
                           time.time() - run.started, tables,
                           *(_mean(results.column(name)) for name in LOSS_COLUMNS))
    tables["summary"] = output.join("runs", run.run_id, "summary.json").uri
    run.finish({**asdict(result), "spec_name": spec.name, "styles": list(spec.styles), "input": spec.input})
    return result


def _mean(column) -> float | None:
    import pyarrow.compute as pc

    mean = pc.mean(column).as_py()  # nulls skipped; None when every value is null
    return None if mean is None else float(mean)


def error_rows(staged_errors, listed: dict[str, StoredObject]):
    """The errors table of a stylize run: one row per content image that failed (the
    errors schema every job kind shares)."""
    import pyarrow as pa

    return pa.Table.from_pylist([
        {"uri": r["content_uri"], "etag": listed[r["content_uri"]].etag, "size": listed[r["content_uri"]].size,
         "modality": "image", "route": None, "stage": r["stage"], "error": r["error"], "seconds": None,
         "model_id": r["model_id"], "run_id": r["run_id"], "scored_at": r["scored_at"], "superseded_on": None}
        for r in staged_errors.to_pylist()], schema=ERRORS_SCHEMA())


def _reason(exc: BaseException) -> str:
    # A module that does not load fails every actor; its message says what to do.
    found = re.search(r"StylizerLoadError: (.*)", str(exc))
    return found.group(1).strip() if found else root_cause(exc)


def _check_accounting(run: Run, staged, expected: set[str], style_uris: list[str]) -> None:
    """Every content image has one result per style, or one error row and no results."""
    import pyarrow.compute as pc

    results = staged.to_table(columns=["content_uri", "style_uri"], filter=pc.field("error").is_null())
    failed = staged.to_table(columns=["content_uri"], filter=pc.field("error").is_valid()).column(0).to_pylist()
    per_content: dict[str, list[str]] = defaultdict(list)
    for content, style in zip(*(results.column(i).to_pylist() for i in range(2))):
        per_content[content].append(style)
    wanted = sorted(style_uris)
    run.check_accounting(expected, [*per_content, *failed],
                         extra={"wrong set of styles": sum(1 for s in per_content.values() if sorted(s) != wanted)})
