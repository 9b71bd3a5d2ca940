"""What a decoder returns (`DecodedMedia`), the typed failure for media that cannot be turned
into model inputs, and the size limits every decoder applies before it decodes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

# The largest image or video frame decoded, in pixels (8K UHD, 7680x4320, fits): a small
# file can declare a huge canvas (a decompression bomb) and decoding it would exhaust the
# decoder's memory. `MEDIAJOBS_MAX_PIXELS` changes it (forwarded from the driver to workers).
DEFAULT_MAX_PIXELS = 1 << 25


def max_pixels() -> int:
    return int(os.environ.get("MEDIAJOBS_MAX_PIXELS", DEFAULT_MAX_PIXELS))


@dataclass(frozen=True)
class DecodedMedia:
    """What one media object decodes to.

    `examples` has shape `(n, *example_shape)`; `positions` has n dicts. `warning` is
    set when decoding stopped early but kept what it had (e.g. a truncated video): the
    examples are scored and the object also gets an errors row with this text.
    """

    examples: Any  # numpy array
    positions: list[dict] = field(default_factory=list)
    warning: str | None = None


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
