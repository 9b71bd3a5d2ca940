"""Thumbnails for the morning report: the lowest-confidence images and video frames of a
run, fetched from the store and shrunk to small PNGs. A missing or undecodable object costs
its thumbnail (logged), never the report."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.errors import StorageError
from jobs.storage.objects import describe_storage_error, read_bytes

if TYPE_CHECKING:
    import pyarrow as pa
    from PIL import Image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thumbnail:
    """A small PNG of one low-confidence item and what the model said about it."""

    uri: str
    label: str
    score: float
    png: bytes
    detail: str  # where in the object: "image", or "frame 12 at 6.0 s"


def lowest_confidence_thumbnails(tables: dict[str, pa.Table], n: int = 20, side: int = 128) -> list[Thumbnail]:
    """Thumbnails of the `n` lowest-score images and video frames, by score ascending."""
    from jobs.reports.figures import figures_of_tables

    return thumbnails_for(figures_of_tables(tables, n).candidates(), side)


def thumbnails_for(candidates: list[dict], side: int = 128) -> list[Thumbnail]:
    """Thumbnails of the candidates (`uri`, `label`, `score`, `frame_index`, `timestamp_s`;
    no frame index: an image), in their order.

    The candidates are chosen first; one whose object cannot be fetched or decoded is
    left out (and logged), so fewer may come back. Not backfilling keeps the cost bounded
    when the store is unreachable. Each video is fetched once for all its frames.
    """
    pngs: dict[int, bytes] = {}  # candidate position -> thumbnail PNG
    frames_wanted: dict[str, list[int]] = {}  # video uri -> candidate positions
    for position, item in enumerate(candidates):
        if item["frame_index"] is None:
            png = _image_thumbnail(item["uri"], side)
            if png is not None:
                pngs[position] = png
        else:
            frames_wanted.setdefault(item["uri"], []).append(position)
    for uri, positions in frames_wanted.items():
        decoded = _video_thumbnails(uri, {candidates[p]["frame_index"] for p in positions}, side)
        pngs.update({p: decoded[candidates[p]["frame_index"]] for p in positions
                     if candidates[p]["frame_index"] in decoded})
    return [Thumbnail(item["uri"], item["label"] or "", item["score"], pngs[p], _detail(item))
            for p, item in enumerate(candidates) if p in pngs]


def _fetch(uri: str) -> bytes | None:
    try:
        return read_bytes(uri)
    except (OSError, StorageError) as exc:  # pyarrow raises OSError subclasses for missing/denied/network
        log.warning("report: no thumbnail for %s: cannot fetch it (%s)", uri, describe_storage_error(exc))
        return None


def _image_thumbnail(uri: str, side: int) -> bytes | None:
    from PIL import Image

    data = _fetch(uri)
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (side, side))  # JPEG: decode at a reduced scale, far faster for large photos
            return _thumbnail_png(image.convert("RGB"), side)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes; a decoder failure must not stop the report
        log.warning("report: no thumbnail for %s: cannot decode it (%s: %s)", uri, type(exc).__name__, exc)
        return None


def _video_thumbnails(uri: str, frame_indices: set[int], side: int) -> dict[int, bytes]:
    """Thumbnails of the wanted frames of one video, by frame index; frames that do not decode are missing."""
    import cv2
    from PIL import Image

    data = _fetch(uri)
    if data is None:
        return {}
    pngs = {}
    # OpenCV cannot read a video from memory: it needs a file.
    with tempfile.TemporaryDirectory(prefix="mediajobs-report-") as scratch:
        path = os.path.join(scratch, "video" + os.path.splitext(uri)[1][:16])
        with open(path, "wb") as local:
            local.write(data)
        # CAP_FFMPEG only: the default backends include CAP_IMAGES, which reads "%" in names as a pattern.
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        try:
            for index in sorted(frame_indices):  # in file order: one forward pass
                if not capture.isOpened() or (index and not capture.set(cv2.CAP_PROP_POS_FRAMES, index)):
                    break
                ok, frame = capture.read()
                if ok:
                    pngs[index] = _thumbnail_png(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)), side)
        except cv2.error as exc:
            log.warning("report: cannot decode frames of %s (%s)", uri, exc)
        finally:
            capture.release()
    if len(pngs) < len(frame_indices):
        log.warning("report: no thumbnail for %d frame(s) of %s: they do not decode",
                    len(frame_indices) - len(pngs), uri)
    return pngs


def _thumbnail_png(picture: Image.Image, side: int) -> bytes:
    picture.thumbnail((side, side))  # keeps the aspect ratio; never enlarges
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _detail(item: dict) -> str:
    if item["frame_index"] is None:
        return "image"
    at = f" at {item['timestamp_s']:.1f} s" if item["timestamp_s"] is not None else ""
    return f"frame {item['frame_index']}{at}"
