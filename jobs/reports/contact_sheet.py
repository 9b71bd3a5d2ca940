"""The stylize job's contact sheet: the styles, then each content image next to its results."""

from __future__ import annotations

import io
from collections import defaultdict

import numpy as np

from jobs.storage.objects import read_bytes

SHEET_ROWS, SHEET_CELL = 8, 160  # contact sheet: first 8 content images, 160-pixel cells


def contact_sheet_png(results, style_uris: list[str], styles: list[np.ndarray]) -> bytes:
    """A PNG: a header row of the styles, then per content image (the first SHEET_ROWS, by URI)
    the content and its result in each style, each fitted into a SHEET_CELL square."""
    from PIL import Image

    from tasks.style_transfer import decode_full

    by_content: dict[str, dict[str, str]] = defaultdict(dict)
    for content, style, out in zip(*(results.column(name).to_pylist()
                                     for name in ("content_uri", "style_uri", "output_uri"))):
        by_content[content][style] = out
    contents = sorted(by_content)[:SHEET_ROWS]
    pad = 4
    sheet = Image.new("RGB", ((len(style_uris) + 1) * (SHEET_CELL + pad) + pad,
                              (len(contents) + 1) * (SHEET_CELL + pad) + pad), (32, 32, 32))

    def place(image: Image.Image, row: int, column: int) -> None:
        image.thumbnail((SHEET_CELL, SHEET_CELL))
        x = pad + column * (SHEET_CELL + pad) + (SHEET_CELL - image.width) // 2
        y = pad + row * (SHEET_CELL + pad) + (SHEET_CELL - image.height) // 2
        sheet.paste(image, (x, y))

    for column, style in enumerate(styles, start=1):
        place(Image.fromarray(style), 0, column)
    for row, content in enumerate(contents, start=1):
        place(Image.fromarray(decode_full(read_bytes(content))), row, 0)
        for column, style_uri in enumerate(style_uris, start=1):
            place(Image.open(io.BytesIO(read_bytes(by_content[content][style_uri]))).convert("RGB"), row, column)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = ["SHEET_CELL", "SHEET_ROWS", "contact_sheet_png"]
