"""`annotate: true` for video scoring: per video, an MP4 with the predicted label and score
drawn on each sampled frame, and a contact-sheet PNG, under `<output>/annotated/`.

Runs after the commit, as one Ray Data task per video: it re-reads the video (the frames
are not kept through the scoring pipeline, which only carries model-size inputs) and
joins the committed frame predictions by `frame_index`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from typing import Any

ANNOTATED = "annotated"


def output_key_for(uri: str, input_prefix: str) -> str:
    """A relative output key for an input object: inside the output prefix, one per input.

    The object's path below the input prefix, escaped reversibly: each UTF-8 byte of a
    character outside [A-Za-z0-9._-] becomes `~XX` (`~` itself is `~7E`), a `.` or `..`
    segment `~2E` per dot, an empty segment (`a//b`, a leading `/`) `~`. So no output key
    has an empty, `.` or `..` segment or a character a URL, a shell or a Windows path reads
    (`%`, `\\`, `?`, `#`), and distinct input keys give distinct output keys (replacing
    characters with `_` would let `a b` and `a_b` meet). A key too long to keep (S3
    takes 1024 bytes a key; file systems and SeaweedFS 255 a name) becomes the start of its
    last segment, `~~` and a digest of the input key: no escaped key holds `~~`, so it
    meets no other either.
    """
    relative = uri[len(input_prefix):] if uri.startswith(input_prefix) else uri.rsplit("/", 1)[-1]
    segments = [_escape_segment(segment) for segment in relative.split("/")]
    key = "/".join(segments)
    if len(key) <= MAX_KEY_CHARS and max(map(len, segments)) <= MAX_SEGMENT_CHARS:
        return key
    digest = hashlib.sha256(relative.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    name = re.sub(r"~[0-9A-F]?$", "", segments[-1][:_SHORTENED_NAME_CHARS])  # no escape cut in half
    return f"{name}~~{digest}"


# Escaped keys are ASCII, so characters are bytes. Room is left for the output prefix, the
# folders a job adds (`images/<style>/`) and the suffix it appends (`.mp4`, `~.png`).
MAX_KEY_CHARS = 512
MAX_SEGMENT_CHARS = 200
_SHORTENED_NAME_CHARS = 64
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def _escape_segment(segment: str) -> str:
    if not segment:
        return "~"
    if set(segment) == {"."}:
        return "~2E" * len(segment)
    return "".join(char if char in _PLAIN else "".join(f"~{byte:02X}" for byte in
                                                        char.encode("utf-8", "surrogatepass"))
                   for char in segment)


def annotate_video(row: dict[str, Any], *, task: Any, output_prefix: str, input_prefix: str) -> dict[str, Any]:
    """Write the annotated MP4 and contact sheet of one video; returns their URIs (or an error)."""
    from jobs.storage.objects import parse_uri, upload_file, write_bytes
    from jobs.workers.decoding import fetch_object
    from tasks.annotate import contact_sheet, draw_label, write_annotated_mp4
    from tasks.media import MediaDecodeError
    from tasks.video_classifier import sample_frames

    uri = row["uri"]
    predictions = {int(k): v for k, v in json.loads(row["predictions"]).items()}
    key = output_key_for(uri, input_prefix)
    base = parse_uri(output_prefix).as_prefix().join(ANNOTATED, key)
    with tempfile.TemporaryDirectory(prefix="mediajobs-annotate-") as tmp:
        source, error = fetch_object(uri, int(row["size"]), "file", tmp)
        if error:
            return {"uri": uri, "video_uri": None, "sheet_uri": None, "error": error}
        frames, captions = [], []
        try:
            for frame_index, timestamp, frame in sample_frames(source, task.every_seconds, task.every_n_frames,
                                                               task.max_frames, display_width=320):
                label, score = predictions.get(frame_index, ("?", 0.0))
                frames.append(draw_label(frame, f"{label}  t={timestamp:.1f}s", float(score)))
                captions.append(f"{timestamp:.1f}s {label} {float(score):.2f}")
        except MediaDecodeError as exc:
            if not frames:
                return {"uri": uri, "video_uri": None, "sheet_uri": None, "error": exc.reason}
        fps = 1.0 / task.every_seconds if task.every_seconds and not task.every_n_frames else 2.0
        local_mp4 = os.path.join(tmp, "annotated.mp4")
        write_annotated_mp4(frames, local_mp4, fps=max(1.0, min(fps, 30.0)))
        upload_file(local_mp4, base.uri + ".mp4")
        write_bytes(base.uri + ".png", contact_sheet(frames, captions))
    return {"uri": uri, "video_uri": base.uri + ".mp4", "sheet_uri": base.uri + ".png", "error": None}


def annotate_videos(frames_uri: str, sizes: dict[str, int], task: Any, output_prefix: str,
                    input_prefix: str) -> list[dict]:
    """Annotate every video that has committed frame predictions."""
    import ray.data

    from jobs.storage.delta import read_table

    table = read_table(frames_uri, columns=["uri", "frame_index", "label", "score"])
    by_video: dict[str, dict[int, tuple[str, float]]] = {}
    for uri, index, label, score in zip(*(table.column(c).to_pylist() for c in ("uri", "frame_index", "label",
                                                                                  "score"))):
        by_video.setdefault(uri, {})[index] = (label, score)
    if not by_video:
        return []
    items = [{"uri": uri, "size": sizes.get(uri, 0), "predictions": json.dumps(frames)}
             for uri, frames in sorted(by_video.items())]
    # fn_kwargs supplies the keyword-only arguments (ray's Callable type cannot say so, hence the ignore).
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map(
        annotate_video,  # type: ignore[arg-type]
        fn_kwargs={"task": task, "output_prefix": output_prefix, "input_prefix": input_prefix})
    return ds.take_all()
