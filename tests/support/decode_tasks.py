"""Tasks for the decode isolation tests: importable by name, so a decode child can unpickle them."""

from __future__ import annotations

import numpy as np

from tasks.registry import DecodedMedia


class LyingTask:
    """Decodes every object to an array that is not what it declares (`example_shape`)."""

    name = "lying"
    reads = "bytes"
    example_shape = (4, 4, 3)
    example_dtype = np.uint8

    def decode(self, data: bytes, deadline: float | None = None) -> DecodedMedia:
        return DecodedMedia(np.zeros((1, 400, 400, 3), np.uint8), [{}])
