"""Task names to task classes, through one explicit registry, and the Task protocol.

A task owns everything model-specific and nothing about Ray or storage:

- `reads`: "bytes" when `decode` takes the object's bytes (images, audio), "file" when
  it needs a local file path (video: OpenCV's VideoCapture cannot read from memory,
  and a video must never be held in memory whole).
- `suffixes`: the object name suffixes the task reads (lower case, with the dot).
- `example_shape`, `example_dtype`: one model input example (an image, a frame, an
  MFCC window); `decode` returns a stack of them.
- `decode(source, deadline=None) -> DecodedMedia`: bytes or path to examples plus one
  `positions` dict per example (e.g. `{"frame_index": 3, "timestamp_s": 1.5}`); raises
  `tasks.media.MediaDecodeError` for unusable media. `deadline` is a `time.monotonic()`
  value: long decodes check it and stop with a MediaDecodeError (or a partial result
  with a `warning`) instead of hanging a worker.
- `position_columns`: the names of the keys in `positions` (the extra prediction columns).
- `build_model(architecture, num_classes, learning_rate)`: a compiled tf-keras model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

# Task modules register themselves on import; this maps a name to its module so the
# registry can import lazily (TensorFlow-heavy modules load only when used).
_MODULES = {
    "image-classifier": "tasks.image_classifier",
    "video-classifier": "tasks.video_classifier",
    "audio-classifier": "tasks.audio_classifier",
    "gan": "tasks.gan",
    "style-transfer": "tasks.style_transfer",
}
_REGISTRY: dict[str, type[Task]] = {}


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


class Task:
    """Base of all tasks: model-specific knowledge, nothing about Ray or storage."""

    name: str = ""
    reads: str = "bytes"
    suffixes: tuple[str, ...] = ()
    position_columns: tuple[str, ...] = ()


_TaskClass = TypeVar("_TaskClass", bound="type[Task]")


def register(name: str) -> Callable[[_TaskClass], _TaskClass]:
    def decorate(cls: _TaskClass) -> _TaskClass:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def task_names() -> list[str]:
    return sorted(_MODULES)


def get_task(name: str) -> type[Any]:
    """The task class registered under `name` (typed `Any`: callers use members such as
    `decode`, `build_model` and `output_tables` that each task defines and `Task` does not declare).

    Raises:
        KeyError: with the list of valid names, for an unknown task.
    """
    if name not in _MODULES:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(task_names())}")
    if name not in _REGISTRY:
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name]
