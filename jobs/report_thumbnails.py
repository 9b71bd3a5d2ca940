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
from jobs.storage import describe_storage_error, read_bytes

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
    """Thumbnails of the `n` lowest-score images and video frames, by score ascending.

    The `n` candidates are chosen first; one whose object cannot be fetched or decoded is
    left out (and logged), so fewer than `n` may come back. Not backfilling keeps the cost
    bounded when the store is unreachable. Each video is fetched once for all its frames.
    """
    candidates = _lowest_confidence_candidates(tables, n)
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


def _lowest_confidence_candidates(tables: dict[str, pa.Table], n: int) -> list[dict]:
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = pa.schema([("uri", pa.string()), ("label", pa.string()), ("score", pa.float64()),
                        ("frame_index", pa.int64()), ("timestamp_s", pa.float64())])
    parts = []
    images = modality_rows(tables, "image")
    if images is not None:
        no_position = pa.nulls(images.num_rows)
        parts.append(pa.table([images["uri"], images["label"], images["score"], no_position, no_position],
                              names=schema.names).cast(schema))
    if has_rows(tables, "frames"):
        parts.append(tables["frames"].select(schema.names).cast(schema))
    if not parts:
        return []
    items = pa.concat_tables(parts).filter(pc.is_valid(pc.field("score")))
    # uri and frame break ties, so the same run always shows the same thumbnails.
    items = items.sort_by([("score", "ascending"), ("uri", "ascending"), ("frame_index", "ascending")])
    return items.slice(0, n).to_pylist()


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


def has_rows(tables: dict[str, pa.Table], name: str) -> bool:
    return name in tables and tables[name].num_rows > 0


def modality_rows(tables: dict[str, pa.Table], modality: str) -> pa.Table | None:
    """The predictions of one modality, or None when there are none."""
    import pyarrow.compute as pc

    if not has_rows(tables, "predictions"):
        return None
    rows = tables["predictions"].filter(pc.field("modality") == modality)
    return rows if rows.num_rows else None
