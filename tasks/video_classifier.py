"""The video classifier: the image task's CNN applied to frames sampled from a video file.

Frames are read with OpenCV one at a time (a video is never held in memory whole); each
sampled frame goes through exactly the image task's pixel pipeline (`fit_to_input`).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from tasks.definition import TaskDefinition
from tasks.image_classifier import CNN_ARCHITECTURES, build_cnn, fit_to_input
from tasks.media import MediaDecodeError, max_pixels
from tasks.object_votes import winners
from tasks.protocols import Classifier
from tasks.registry import DecodedMedia, Task, define, register
from tasks.video_probe import explain_unopenable, sniff_non_video

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
# Samples at least this many frames apart are reached by seeking, closer ones by grabbing
# every frame. Measured on 30 s of 640x360 at 30 fps: at 30-frame gaps sequential grabs
# were as fast as seeks (mp4v, 12-frame GOPs) or 5x faster (H.264, 250-frame GOPs, where a
# seek decodes from the previous keyframe); at 300-frame gaps seeking was 3-10x faster.
SEEK_MIN_GAP = 300
# OpenCV's CAP_PROP_FRAME_COUNT can be off by a frame or two (it is estimated from the
# duration when the container does not store it); fewer frames than that is truncation.
FRAME_COUNT_TOLERANCE = 2


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame as decoded: OpenCV BGR pixels at the video's own size."""

    frame_index: int
    timestamp_s: float
    bgr: np.ndarray


@dataclass(frozen=True)
class VideoDecodedMedia(DecodedMedia):
    """DecodedMedia plus facts about the video (`info`, e.g. `duration_s`, for the per-video
    table) and, when asked for, the sampled frames at display size (RGB) for annotation."""

    info: dict = field(default_factory=dict)
    display_frames: tuple = ()


class FrameSampler:
    """Iterates over the sampled frames of a video file, decoding one frame at a time.

    Samples every `every_n_frames`-th frame if set, else the frame nearest to each
    multiple of `every_seconds`; at most `max_frames`. After (or during) iteration,
    `warning` says why decoding stopped early while keeping frames (truncated or
    corrupt data, deadline reached) and `info` describes the video.

    Raises (while iterating):
        MediaDecodeError: the file is not a usable video, is longer than `max_seconds`,
            or no frame could be sampled.
    """

    def __init__(self, path: str, every_seconds: float | None = 1.0, every_n_frames: int | None = None,
                 max_frames: int = 300, max_seconds: float = 4 * 3600, deadline: float | None = None,
                 seek_min_gap: int = SEEK_MIN_GAP, clock: Callable[[], float] = time.monotonic) -> None:
        check_sampling(every_seconds, every_n_frames, max_frames, max_seconds)
        self.path = str(path)
        self.every_seconds = every_seconds
        self.every_n_frames = every_n_frames
        self.max_frames = max_frames
        self.max_seconds = max_seconds
        self.deadline = deadline
        self.seek_min_gap = seek_min_gap
        self.clock = clock  # injectable so tests can pass a deadline at a chosen frame
        self.warning: str | None = None
        self.info: dict = {}

    def __iter__(self) -> Iterator[SampledFrame]:
        import cv2

        self.warning = None
        capture = _open_capture(self.path)
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            fps = fps if math.isfinite(fps) and 0 < fps < 10_000 else 0.0
            count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
            duration = count / fps if fps and count else None
            if duration is not None and duration > self.max_seconds:
                raise MediaDecodeError(f"video too long: {duration:,.0f} s ({count} frames at {fps:g} fps), "
                                       f"limit max_seconds={self.max_seconds:g}")
            gap = self.every_n_frames or (self.every_seconds or 0) * fps
            seeking = bool(fps and count and gap >= max(2, self.seek_min_gap))
            self.info = {"duration_s": duration, "fps": fps or None, "frame_count": count or None,
                         "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                         "sampling": "seek" if seeking else "sequential", "frames_sampled": 0,
                         "stopped_at_max_frames": False}
            reader = self._seek if seeking else self._sequential
            yield from reader(capture, fps, count)
        finally:
            capture.release()

    def _sequential(self, capture, fps: float, count: int) -> Iterator[SampledFrame]:
        index, t, next_due = 0, 0.0, 0.0
        every_seconds = self.every_seconds or 0.0  # read only without every_n_frames, when it is set
        tolerance = 0.5 / fps if fps else 1e-3  # sample the frame nearest to each due time
        while True:
            if self._deadline_passed(t):
                return
            if not capture.grab():
                break
            t = _timestamp(capture, index, fps, t)
            self._check_length(t)
            if self.every_n_frames:
                due = index % self.every_n_frames == 0
            else:
                if math.isnan(t):
                    raise MediaDecodeError(f"cannot sample every {self.every_seconds:g} s: the video declares "
                                           "no frame rate and no timestamps (sample with every_n_frames)")
                due = t + tolerance >= next_due
                if due:
                    next_due = (math.floor((t + tolerance) / every_seconds) + 1) * every_seconds
            if due:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                yield SampledFrame(index, t, frame)
                if self._sampled_enough():
                    return
            index += 1
        self._check_complete(index, count, fps, t)

    def _seek(self, capture, fps: float, count: int) -> Iterator[SampledFrame]:
        import cv2

        step = self.every_n_frames or (self.every_seconds or 0.0) * fps  # seconds to frames: assumes a constant rate
        t = 0.0
        for k in itertools.count():  # left only by return (done) or break (could not decode)
            target = round(k * step)
            if target >= count or self._deadline_passed(t):
                return
            if target and not capture.set(cv2.CAP_PROP_POS_FRAMES, target):
                break
            ok, frame = capture.read()
            if not ok:
                break
            index = int(capture.get(cv2.CAP_PROP_POS_FRAMES)) - 1
            index = index if index >= 0 else target
            t = _timestamp(capture, index, fps, -math.inf)
            self._check_length(t)
            yield SampledFrame(index, t, frame)
            if self._sampled_enough():
                return
        self._check_complete(target, count, fps, t)

    def _sampled_enough(self) -> bool:
        self.info["frames_sampled"] += 1
        self.info["stopped_at_max_frames"] = self.info["frames_sampled"] >= self.max_frames
        return self.info["stopped_at_max_frames"]

    def _deadline_passed(self, t: float) -> bool:
        if self.deadline is None or self.clock() < self.deadline:
            return False
        if not self.info["frames_sampled"]:
            raise MediaDecodeError(f"decode time limit reached at t={t:.1f}s before any frame was sampled")
        self.warning = f"decode time limit reached at t={t:.1f}s"
        return True

    def _check_length(self, t: float) -> None:
        # The declared duration was checked up front; this catches videos that declare none.
        if t > self.max_seconds:
            raise MediaDecodeError(f"video too long: still decoding at t={t:,.0f} s, "
                                   f"limit max_seconds={self.max_seconds:g}")

    def _check_complete(self, frames_read: int, count: int, fps: float, t: float) -> None:
        """Called when the decoder ran out of frames: was that the end of the video?"""
        if not self.info["frames_sampled"]:
            if count:
                raise MediaDecodeError(f"no frame could be decoded of an expected {count}: truncated or corrupt")
            raise MediaDecodeError("video has zero frames")
        if count and frames_read < count - FRAME_COUNT_TOLERANCE:
            stopped_at = frames_read / fps if fps else t
            self.warning = (f"decoding stopped at frame {frames_read} (t={stopped_at:.1f}s) of an expected "
                            f"{count}: truncated or corrupt")


def check_sampling(every_seconds: float | None, every_n_frames: int | None, max_frames: int,
                   max_seconds: float) -> None:
    """Raises ValueError, naming the field, for sampling settings that cannot work."""
    if every_n_frames is not None and (isinstance(every_n_frames, bool) or not isinstance(every_n_frames, int)
                                       or every_n_frames < 1):
        raise ValueError(f"every_n_frames must be a whole number >= 1, got {every_n_frames!r}")
    if every_n_frames is None:
        if every_seconds is None:
            raise ValueError("set every_seconds or every_n_frames (how often to sample frames)")
        if not (math.isfinite(every_seconds) and every_seconds > 0):
            raise ValueError(f"every_seconds must be > 0, got {every_seconds!r}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames!r}")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds!r}")


def sample_frames(path: str, every_seconds: float | None = 1.0, every_n_frames: int | None = None,
                  max_frames: int = 300, display_width: int = 320, deadline: float | None = None,
                  max_seconds: float = 4 * 3600) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yields `(frame_index, timestamp_s, display_frame_rgb)` for each sampled frame.

    Display frames are `display_width` wide (even, with the video's aspect ratio). A
    truncated video simply ends early here; use `FrameSampler` to read its `warning`.

    Raises:
        MediaDecodeError: as `FrameSampler`.
    """
    sampler = FrameSampler(path, every_seconds, every_n_frames, max_frames, max_seconds, deadline)
    for frame in sampler:
        yield frame.frame_index, frame.timestamp_s, to_display(frame.bgr, display_width)


def to_display(frame_bgr: np.ndarray, display_width: int) -> np.ndarray:
    """An OpenCV BGR frame to RGB at `display_width` (even sizes, as video encoders want)."""
    import cv2

    height, width = frame_bgr.shape[:2]
    new_width = max(2, display_width - display_width % 2)
    new_height = max(2, round(height * new_width / width / 2) * 2)
    interpolation = cv2.INTER_AREA if new_width < width else cv2.INTER_LINEAR
    return cv2.cvtColor(cv2.resize(frame_bgr, (new_width, new_height), interpolation=interpolation),
                        cv2.COLOR_BGR2RGB)


def _timestamp(capture, index: int, fps: float, previous: float) -> float:
    """The frame's presentation time: the container's when sane, else index / fps (NaN if neither)."""
    import cv2

    msec = capture.get(cv2.CAP_PROP_POS_MSEC)
    if math.isfinite(msec) and msec >= 0 and (index == 0 or msec / 1000 > previous):
        return msec / 1000
    return index / fps if fps else math.nan


def _open_capture(path: str):
    import cv2

    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise MediaDecodeError(f"cannot read the video file: {exc.strerror}") from None
    if size == 0:
        raise MediaDecodeError("empty object (0 bytes)")
    with open(path, "rb") as f:
        other = sniff_non_video(f.read(4096))
    if other:  # FFmpeg would open a still image as a one-frame video
        raise MediaDecodeError(f"not a video ({other})")
    # CAP_FFMPEG only: the default backend list includes CAP_IMAGES, which would read a
    # name such as "clip%03d.mp4" as an image-sequence pattern. One decoder thread: the
    # pipeline decodes as many videos at once as it has cores (a child per call), and
    # FFmpeg's own threads (one per core by default) then only cost CPU per frame: 2x for
    # 320x240 mp4v (1.8x the sampled frames/s), 7% for 720p H.264 (measured 2026-12-07,
    # docs/performance.md "Library trials").
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not capture.isOpened():
        capture.release()
        raise MediaDecodeError(explain_unopenable(path))
    # The frame size from the container and codec headers, before any frame is decoded: a
    # 16384x16384 MJPEG frame alone would take 800 MB to decode. (A stream that declares no
    # size, e.g. an index without data, is left to the decoder, in its memory-limited child.)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    limit = max_pixels()
    if width * height > limit:
        capture.release()
        raise MediaDecodeError(f"video frames too large: {width}x{height} pixels (limit {limit:,})")
    return capture


def summarize_video(labels: Sequence[str], scores: Sequence[Sequence[float]], class_names: Sequence[str],
                    top_labels: Sequence[Sequence[str]] | None = None) -> dict:
    """One verdict for a video from its per-frame predictions.

    Args:
        labels: the predicted (top-1) label of each frame.
        scores: per frame, the full class probabilities in `class_names` order (one
            sigmoid value for a binary model), or, with `top_labels`, top-k scores.
        class_names: the model's classes.
        top_labels: per frame, the labels that `scores` belong to (top-k rows); classes
            outside a frame's top k count as 0 in the means.

    Returns:
        `label` (the majority label; ties broken by mean score, then class order),
        `score` (its mean score), `mean_scores` and `votes` per class, `frames`.

    Raises:
        ValueError: no frames, mismatched lengths or unknown labels.
    """
    names = list(class_names)
    if not labels:
        raise ValueError("summarize_video needs at least one frame")
    if len(scores) != len(labels) or (top_labels is not None and len(top_labels) != len(labels)):
        raise ValueError(f"{len(labels)} labels but {len(scores)} score rows"
                         + ("" if top_labels is None else f" and {len(top_labels)} top_labels rows"))
    mentioned = set(labels).union(*(top_labels or []))
    unknown = sorted(mentioned - set(names))
    if unknown:
        raise ValueError(f"labels not in class_names: {', '.join(unknown)}")
    matrix = np.zeros((len(labels), len(names)))
    for i, row in enumerate(scores):
        row = [float(v) for v in row]
        if top_labels is not None:
            matrix[i, [names.index(label) for label in top_labels[i]]] = row
        elif len(row) == 1 and len(names) == 2:
            matrix[i] = [1.0 - row[0], row[0]]
        elif len(row) == len(names):
            matrix[i] = row
        else:
            raise ValueError(f"frame {i}: {len(row)} scores for {len(names)} classes (pass top_labels for top-k)")
    means = matrix.mean(axis=0)
    votes = np.bincount([names.index(label) for label in labels], minlength=len(names))
    winner = int(winners(votes, means))
    return {"label": names[winner], "score": float(means[winner]), "frames": len(labels),
            "mean_scores": dict(zip(names, map(float, means))), "votes": dict(zip(names, map(int, votes)))}


@register("video-classifier")
@dataclass(frozen=True)
class VideoClassifier(Task):
    """Classifies videos frame by frame with the image CNN: one example per sampled frame."""

    input_shape: tuple[int, int, int] = (32, 32, 3)
    every_seconds: float | None = 1.0
    every_n_frames: int | None = None  # wins over every_seconds when set
    max_frames: int = 300
    max_seconds: float = 4 * 3600

    reads = "file"
    suffixes = VIDEO_SUFFIXES
    position_columns = ("frame_index", "timestamp_s")
    example_dtype = "uint8"
    output_tables = ("frames", "videos")  # (one row per sampled frame, one row per video)
    count_column = "frames_scored"

    def __post_init__(self) -> None:
        check_sampling(self.every_seconds, self.every_n_frames, self.max_frames, self.max_seconds)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape)

    def decode(self, path: str, deadline: float | None = None,
               display_width: int | None = None) -> VideoDecodedMedia:
        """The sampled frames of the video file at `path` as model inputs `(n, H, W, C)`.

        With `display_width`, also the same frames at that width (RGB) in
        `display_frames`, from the same decoding pass, for annotation.

        Raises:
            MediaDecodeError: unusable video (see `FrameSampler`).
        """
        sampler = FrameSampler(path, self.every_seconds, self.every_n_frames, self.max_frames,
                               self.max_seconds, deadline)
        examples, positions, display = [], [], []
        for frame in sampler:
            examples.append(fit_to_input(frame.bgr, self.input_shape))
            positions.append({"frame_index": frame.frame_index, "timestamp_s": frame.timestamp_s})
            if display_width:
                display.append(to_display(frame.bgr, display_width))
        return VideoDecodedMedia(np.stack(examples), positions, sampler.warning,
                                 info=dict(sampler.info), display_frames=tuple(display))

    def build_model(self, architecture: str, num_classes: int, learning_rate: float):
        return build_cnn(architecture, self.input_shape, num_classes, learning_rate)


# Frame sampling is a scoring choice (a score spec may change it); `annotate` is a score job's.
DEFINITION = define(TaskDefinition("video-classifier", VideoClassifier, CNN_ARCHITECTURES, modality="video",
                                   sections=("frames", "annotate"), filled_sections=("frames",),
                                   scoring_sections=("frames",), classifies_images=True,
                                   example_table="frames"))
# mypy checks the class against the contract the job layers rely on (tasks.protocols).
_CONTRACT: type[Classifier] = VideoClassifier
