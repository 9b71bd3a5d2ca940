"""`mediajobs predict`: classify one image, video file or camera stream on this machine.

The seeds' real-time loop done right: frames are read continuously and classified in
small batches (one model call per batch, not per frame), predictions are printed as
they come, and `--out` writes the annotated video. No Ray: this is one process.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from jobs.errors import MediaJobsError, UsageError
from jobs.models.store import load_keras_model
from jobs.storage.checks import require_object
from jobs.storage.objects import download_file, parse_uri, read_bytes


@dataclass
class Prediction:
    frame_index: int
    timestamp_s: float
    label: str
    score: float


def _frames(capture, every_n_frames: int, max_frames: int | None) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame_index, timestamp_s, BGR frame) for every n-th frame until the stream ends."""
    import cv2

    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    index, yielded, started = 0, 0, time.monotonic()
    while max_frames is None or yielded < max_frames:
        ok, frame = capture.read()
        if not ok or frame is None:
            return
        if index % every_n_frames == 0:
            timestamp = index / fps if fps > 0 else time.monotonic() - started
            yield index, timestamp, frame
            yielded += 1
        index += 1


def predict_source(model_uri: str, source: str, echo: Callable[[str], None] = print, batch: int = 8,
                   every_n_frames: int = 1, max_frames: int | None = None, out: str | None = None,
                   show: bool = False, trust_model_code: bool = False) -> list[Prediction]:
    """Classify `source` (an image or video path or s3:// URI, or a camera index) with a model."""
    import cv2

    from tasks.annotate import draw_label, write_annotated_mp4
    from tasks.image_classifier import IMAGE_SUFFIXES, decode_image, fit_to_input, top_k
    from tasks.registry import definition, task_names

    if not source.isdigit():
        _check_source(source)  # before the model loads: a mistyped path is told at once
    model, metadata = load_keras_model(model_uri, trust_code=trust_model_code)
    if metadata.task not in task_names() or not definition(metadata.task).classifies_images:
        raise UsageError(f"predict classifies images and video frames; the model at {model_uri} is a "
                         f"{metadata.task} model (score audio with a score spec)")
    if show and not _has_gui(cv2):
        raise UsageError("--show needs a display and OpenCV with GUI support; this install is headless "
                         "(use --out FILE to write the annotated video instead)")
    input_shape = metadata.example_shape
    class_names = metadata.class_names

    if not source.isdigit() and source.lower().endswith(IMAGE_SUFFIXES):
        from tasks.media import MediaDecodeError

        try:
            image = decode_image(read_bytes(source), input_shape)
        except MediaDecodeError as exc:
            raise MediaJobsError(f"{source}: not a readable video or image ({exc})") from None
        probabilities = model(image[np.newaxis], training=False).numpy()
        row = top_k(probabilities, class_names, 3)[0]
        echo(f"{source}: {row['label']} {row['score']:.3f}  (top: " +
             ", ".join(f"{label} {s:.3f}" for label, s in zip(row["top_labels"], row["top_scores"])) + ")")
        return [Prediction(0, 0.0, row["label"], row["score"])]

    with tempfile.TemporaryDirectory(prefix="mediajobs-predict-") as tmp:
        capture = _open(source, tmp, cv2)
        source_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        predictions: list[Prediction] = []
        annotated: list[np.ndarray] = []
        pending: list[tuple[int, float, np.ndarray]] = []

        def flush() -> None:
            inputs = np.stack([fit_to_input(frame, input_shape) for _, _, frame in pending])
            rows = top_k(model(inputs, training=False).numpy(), class_names, 1)
            for (index, timestamp, frame), row in zip(pending, rows):
                predictions.append(Prediction(index, timestamp, row["label"], row["score"]))
                echo(f"frame {index:6d}  t={timestamp:8.2f}s  {row['label']:<16} {row['score']:.3f}")
                if out or show:
                    picture = draw_label(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), row["label"], row["score"])
                    if out:
                        annotated.append(picture)
                    if show:
                        cv2.imshow("mediajobs predict", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                        cv2.waitKey(1)
            pending.clear()

        try:
            for item in _frames(capture, every_n_frames, max_frames):
                pending.append(item)
                if len(pending) == batch:
                    flush()
            if pending:
                flush()
        except KeyboardInterrupt:
            echo("stopped")
        finally:
            capture.release()
    if not predictions:
        raise MediaJobsError(f"{source}: no frame could be read")
    if out:
        fps = source_fps / every_n_frames if source_fps > 0 else 10.0
        write_annotated_mp4(annotated, out, fps=max(1.0, min(fps, 60.0)))
        echo(f"annotated video: {out}")
    return predictions


def _open(source: str, tmp: str, cv2):
    if source.isdigit():
        capture = cv2.VideoCapture(int(source))
        if not capture.isOpened():
            raise MediaJobsError(f"cannot open camera {source} (no such device, or no permission)")
        return capture
    location = parse_uri(source)
    path = location.key
    if location.scheme == "s3":
        path = os.path.join(tmp, os.path.basename(location.key) or "video")
        download_file(source, path)
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise MediaJobsError(f"{source}: not a readable video or image")
    return capture


def _check_source(source: str) -> None:
    """A file or object to read is there (a local folder is left to the reader, which says
    it cannot read it).

    Raises:
        UsageError: no such local file.
        StorageError: no such bucket or object, or the store refused.
    """
    location = parse_uri(source)
    if location.scheme != "s3":
        if not os.path.exists(location.key):
            raise UsageError(f"{source}: no such file")
        return
    require_object(source)


def _has_gui(cv2) -> bool:
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return "GUI" in cv2.getBuildInformation() and "NONE" not in cv2.getBuildInformation().split("GUI:")[1][:40]
