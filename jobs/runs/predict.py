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
from typing import Any

import numpy as np

from jobs.errors import MediaJobsError, UsageError
from jobs.models.store import load_keras_model
from jobs.storage.checks import require_object
from jobs.storage.objects import download_file, parse_uri, read_bytes

# (frame_index, timestamp_s, BGR frame)
_Frame = tuple[int, float, np.ndarray]


@dataclass
class Prediction:
    frame_index: int
    timestamp_s: float
    label: str
    score: float


def _frames(capture, every_n_frames: int, max_frames: int | None) -> Iterator[_Frame]:
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


def _batches(items: Iterator[_Frame], size: int) -> Iterator[list[_Frame]]:
    """`items` in lists of `size`, the last one shorter."""
    batch: list[_Frame] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_source(model_uri: str, source: str, echo: Callable[[str], None] = print, batch: int = 8,
                   every_n_frames: int = 1, max_frames: int | None = None, out: str | None = None,
                   show: bool = False, trust_model_code: bool = False) -> list[Prediction]:
    """Classify `source` (an image or video path or s3:// URI, or a camera index) with a model."""
    import cv2

    from tasks.annotate import write_annotated_mp4
    from tasks.image_classifier import IMAGE_SUFFIXES

    if not source.isdigit():
        _check_source(source)  # before the model loads: a mistyped path is told at once
    classifier = _load_image_classifier(model_uri, trust_model_code, show)
    if not source.isdigit() and source.lower().endswith(IMAGE_SUFFIXES):
        return [_predict_image(classifier, source, echo)]

    frames = _FrameClassifier(classifier, echo, keep_annotated=bool(out), show=show)
    with tempfile.TemporaryDirectory(prefix="mediajobs-predict-") as tmp:
        capture = _open(source, tmp, cv2)
        source_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        try:
            for frame_batch in _batches(_frames(capture, every_n_frames, max_frames), batch):
                frames.classify(frame_batch)
        except KeyboardInterrupt:
            echo("stopped")
        finally:
            capture.release()
    if not frames.predictions:
        raise MediaJobsError(f"{source}: no frame could be read")
    if out:
        fps = source_fps / every_n_frames if source_fps > 0 else 10.0
        write_annotated_mp4(frames.annotated, out, fps=max(1.0, min(fps, 60.0)))
        echo(f"annotated video: {out}")
    return frames.predictions


@dataclass(frozen=True)
class _ImageClassifier:
    """A loaded model that classifies images, and what its metadata says about its input and output."""

    model: Any
    input_shape: tuple[int, ...]
    class_names: list[str]


def _load_image_classifier(model_uri: str, trust_model_code: bool, show: bool) -> _ImageClassifier:
    """The model at `model_uri`, refused unless its task classifies images (and `show` unless
    this OpenCV can open a window)."""
    import cv2

    from tasks.registry import definition, task_names

    model, metadata = load_keras_model(model_uri, trust_code=trust_model_code)
    if metadata.task not in task_names() or not definition(metadata.task).classifies_images:
        raise UsageError(f"predict classifies images and video frames; the model at {model_uri} is a "
                         f"{metadata.task} model (score audio with a score spec)")
    if show and not _has_gui(cv2):
        raise UsageError("--show needs a display and OpenCV with GUI support; this install is headless "
                         "(use --out FILE to write the annotated video instead)")
    return _ImageClassifier(model, metadata.example_shape, metadata.class_names)


def _predict_image(classifier: _ImageClassifier, source: str, echo: Callable[[str], None]) -> Prediction:
    """The one image at `source`, classified; its top three classes printed."""
    from tasks.image_classifier import decode_image, top_k
    from tasks.media import MediaDecodeError

    try:
        image = decode_image(read_bytes(source), classifier.input_shape)
    except MediaDecodeError as exc:
        raise MediaJobsError(f"{source}: not a readable video or image ({exc})") from None
    probabilities = classifier.model(image[np.newaxis], training=False).numpy()
    row = top_k(probabilities, classifier.class_names, 3)[0]
    echo(f"{source}: {row['label']} {row['score']:.3f}  (top: " +
         ", ".join(f"{label} {s:.3f}" for label, s in zip(row["top_labels"], row["top_scores"])) + ")")
    return Prediction(0, 0.0, row["label"], row["score"])


class _FrameClassifier:
    """Classifies frames a batch at a time (one model call per batch), printing each prediction
    as it comes; labels each frame's picture for `--out` (kept) and `--show` (shown)."""

    def __init__(self, classifier: _ImageClassifier, echo: Callable[[str], None], keep_annotated: bool,
                 show: bool) -> None:
        self.classifier, self.echo = classifier, echo
        self.keep_annotated, self.show = keep_annotated, show
        self.predictions: list[Prediction] = []
        self.annotated: list[np.ndarray] = []

    def classify(self, frames: list[_Frame]) -> None:
        from tasks.image_classifier import fit_to_input, top_k

        inputs = np.stack([fit_to_input(frame, self.classifier.input_shape) for _, _, frame in frames])
        rows = top_k(self.classifier.model(inputs, training=False).numpy(), self.classifier.class_names, 1)
        for (index, timestamp, frame), row in zip(frames, rows):
            self.predictions.append(Prediction(index, timestamp, row["label"], row["score"]))
            self.echo(f"frame {index:6d}  t={timestamp:8.2f}s  {row['label']:<16} {row['score']:.3f}")
            if self.keep_annotated or self.show:
                self._label(frame, row["label"], row["score"])

    def _label(self, frame: np.ndarray, label: str, score: float) -> None:
        import cv2

        from tasks.annotate import draw_label

        picture = draw_label(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), label, score)
        if self.keep_annotated:
            self.annotated.append(picture)
        if self.show:
            cv2.imshow("mediajobs predict", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            cv2.waitKey(1)


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
