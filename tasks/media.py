"""Typed failures for media that cannot be turned into model inputs."""

from __future__ import annotations


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
