"""Pictures of predictions: a label banner on a frame, an annotated MP4, a contact sheet.

Pure functions on RGB uint8 arrays (H, W, 3); they serve `annotate: true` scoring runs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.ImageFont import BaseImageFont

BANNER_COLOR = (0, 0, 0)
BANNER_OPACITY = 0.6
TEXT_COLOR = (255, 255, 255)
SCORE_BAR_COLOR = (80, 220, 100)
SHEET_BACKGROUND = (32, 32, 32)
SHEET_PADDING = 6
CAPTION_FONT_SIZE = 12


@lru_cache(maxsize=16)
def _font(size: int) -> BaseImageFont:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled FreeType font: no system fonts needed


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=2)
    raise ValueError(f"frames must be (H, W, 3) RGB or (H, W) grayscale, got shape {frame.shape}")


def _fit_text(draw, text: str, max_width: int, size: int) -> tuple[str, BaseImageFont]:
    """The text and a font that fit in `max_width`: a smaller font first, then an ellipsis."""
    while size > 8 and draw.textlength(text, font=_font(size)) > max_width:
        size -= 1
    font = _font(size)
    if draw.textlength(text, font=font) <= max_width:
        return text, font
    while text and draw.textlength(text + "…", font=font) > max_width:
        text = text[:-1]
    return text + "…", font


def draw_label(frame_rgb: np.ndarray, text: str, score: float) -> np.ndarray:
    """A copy of the frame with a banner across the top: `text`, the score, a score bar.

    The font scales with the frame width (about 16 px on a 320-pixel frame).
    """
    from PIL import Image, ImageDraw

    frame = _as_rgb(frame_rgb)
    height, width = frame.shape[:2]
    size = max(9, min(48, width // 20))
    banner = min(height, round(size * 1.6) + 3)
    out = frame.copy()
    out[:banner] = (out[:banner] * (1 - BANNER_OPACITY) + np.array(BANNER_COLOR) * BANNER_OPACITY).astype(np.uint8)
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    label, font = _fit_text(draw, f"{text}  {score:.2f}", width - 8, size)
    draw.text((4, (banner - 3 - size) // 2), label, font=font, fill=TEXT_COLOR)
    bar = round(max(0.0, min(1.0, float(score))) * width)
    if bar:
        draw.rectangle([0, banner - 3, bar - 1, banner - 1], fill=SCORE_BAR_COLOR)
    return np.asarray(image)


def write_annotated_mp4(frames_rgb: Iterable[np.ndarray], path: str, fps: float) -> int:
    """Writes the frames (all one size) to an MP4 (fourcc mp4v) at `fps`; returns the count.

    Odd widths or heights are cropped by one pixel: the encoder needs even sizes.

    Raises:
        ValueError: no frames, frames of different sizes, or fps <= 0.
        OSError: OpenCV could not open a writer for `path`.
    """
    import cv2

    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be > 0, got {fps!r}")
    writer, size, count = None, None, 0
    try:
        for frame in frames_rgb:
            frame = _as_rgb(frame)
            if size is None:
                size = (frame.shape[1] - frame.shape[1] % 2, frame.shape[0] - frame.shape[0] % 2)
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), size)
                if not writer.isOpened():
                    raise OSError(f"OpenCV could not open an mp4v video writer for {path}")
            elif (frame.shape[1] - frame.shape[1] % 2, frame.shape[0] - frame.shape[0] % 2) != size:
                raise ValueError(f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, "
                                 f"the first was {size[0]}x{size[1]}")
            assert writer is not None  # opened at the first frame
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame[:size[1], :size[0]]), cv2.COLOR_RGB2BGR))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if not count:
        raise ValueError("no frames to write")
    return count


def contact_sheet(frames_rgb: Iterable[np.ndarray], captions: Sequence[str], columns: int = 6,
                  thumb: int = 160) -> bytes:
    """A PNG grid of thumbnails `thumb` pixels wide, each with its caption underneath.

    The sheet is `min(columns, n)` thumbnails wide; thumbnails keep their aspect ratio and
    long captions end with an ellipsis.

    Raises:
        ValueError: no frames, a caption count that differs from the frame count, or
            columns < 1 / thumb < 16.
    """
    import cv2
    from PIL import Image, ImageDraw

    if columns < 1 or thumb < 16:
        raise ValueError(f"columns must be >= 1 and thumb >= 16, got columns={columns}, thumb={thumb}")
    thumbs = []
    for frame in frames_rgb:
        frame = _as_rgb(frame)
        height = max(1, round(frame.shape[0] * thumb / frame.shape[1]))
        interpolation = cv2.INTER_AREA if thumb < frame.shape[1] else cv2.INTER_LINEAR
        thumbs.append(cv2.resize(frame, (thumb, height), interpolation=interpolation))
    if not thumbs:
        raise ValueError("no frames for a contact sheet")
    if len(captions) != len(thumbs):
        raise ValueError(f"{len(thumbs)} frames but {len(captions)} captions")
    cols = min(columns, len(thumbs))
    rows = math.ceil(len(thumbs) / cols)
    cell_height = max(t.shape[0] for t in thumbs)
    caption_height = CAPTION_FONT_SIZE + 6
    sheet = Image.new("RGB", (cols * thumb + (cols + 1) * SHEET_PADDING,
                              rows * (cell_height + caption_height) + (rows + 1) * SHEET_PADDING), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for i, (image, caption) in enumerate(zip(thumbs, captions)):
        x = SHEET_PADDING + (i % cols) * (thumb + SHEET_PADDING)
        y = SHEET_PADDING + (i // cols) * (cell_height + caption_height + SHEET_PADDING)
        sheet.paste(Image.fromarray(image), (x, y + (cell_height - image.shape[0]) // 2))
        text, font = _fit_text(draw, str(caption), thumb, CAPTION_FONT_SIZE)
        draw.text((x, y + cell_height + 3), text, font=font, fill=TEXT_COLOR)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()
