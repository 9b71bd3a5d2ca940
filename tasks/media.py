"""Typed failures for media that cannot be turned into model inputs, and the size limits
every decoder applies before it decodes."""

from __future__ import annotations

import os

# The largest image or video frame decoded, in pixels (8K UHD, 7680x4320, fits): a small
# file can declare a huge canvas (a decompression bomb) and decoding it would exhaust the
# decoder's memory. `MEDIAJOBS_MAX_PIXELS` changes it (forwarded from the driver to workers).
DEFAULT_MAX_PIXELS = 1 << 25


def max_pixels() -> int:
    return int(os.environ.get("MEDIAJOBS_MAX_PIXELS", DEFAULT_MAX_PIXELS))


class MediaDecodeError(Exception):
    """An object's bytes are not usable media for this task (corrupt, empty, wrong type...).

    Pipelines turn these into rows of the errors table; they never stop a job.
    """

    def __init__(self, reason: str, stage: str = "decode") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage

    def __reduce__(self):
        return (type(self), (self.reason, self.stage))
