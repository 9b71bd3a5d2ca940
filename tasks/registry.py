"""Task names to task definitions and classes, through one explicit registry, and the Task
protocol. Adding a task is one module (its class and its `TaskDefinition`, see
`tasks.definition`) plus one line in `_MODULES`; a task defined elsewhere (a plug-in, a
test) joins with one call, `add_task_module(name, module)`.

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
from typing import TYPE_CHECKING, Any, TypeVar

# A task module's decode returns it; it lives in `tasks.media` (which the task contracts in
# `tasks.protocols` import without reaching the definitions) and is named here too.
from tasks.media import DecodedMedia as DecodedMedia

if TYPE_CHECKING:
    from tasks.definition import Architecture, TaskDefinition

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
_DEFINITIONS: dict[str, TaskDefinition] = {}


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


def define(definition: TaskDefinition) -> TaskDefinition:
    """Record a task module's definition (called by the module, after its class)."""
    _DEFINITIONS[definition.name] = definition
    return definition


def add_task_module(name: str, module: str) -> None:
    """Register a task that lives outside this package: `module` defines its class and
    its definition. Ray workers import it by the same name, so it must be importable
    there too (shipped with the job's code, or installed)."""
    _MODULES[name] = module


def remove_task_module(name: str) -> None:
    """Forget a task added by `add_task_module` (tests that register one for a while). Its
    module stays imported, so its class and definition stay recorded for a later add."""
    _MODULES.pop(name, None)


def task_names() -> list[str]:
    return sorted(_MODULES)


def definition(name: str) -> TaskDefinition:
    """The definition of the task registered under `name`, or of one whose module is imported
    here (a worker has imported a plug-in task's module by unpickling its task object).

    Raises:
        KeyError: with the list of valid names, for an unknown task.
    """
    if name not in _DEFINITIONS:
        get_task(name)
    return _DEFINITIONS[name]


def definitions() -> list[TaskDefinition]:
    """Every task's definition, in registration order."""
    return [definition(name) for name in _MODULES]


def classifier_for_media(media: str) -> TaskDefinition | None:
    """The classifier task that scores `media` (a nightly route's media), if any."""
    return next((d for d in definitions() if d.is_classifier and d.modality == media), None)


def media_names() -> list[str]:
    """The media classifiers score, in registration order."""
    return [d.modality for d in definitions() if d.is_classifier and d.modality]


def all_architectures() -> list[str]:
    """Every architecture a task trains, once: each task's alphabetically, tasks in
    registration order (the order the spec's messages have always listed them in)."""
    names: list[str] = []
    for d in definitions():
        names += [a for a in sorted(a.name for a in d.architectures) if a not in names]
    return names


def field_choices(field: str) -> list[str]:
    """The values any architecture allows for a model field that picks one of a few parts
    (`Architecture.choices`), once each, in registration order."""
    names: list[str] = []
    for d in definitions():
        for candidate in d.architectures:
            names += [c for c in candidate.choices.get(field, ()) if c not in names]
    return names


def architecture(name: str) -> Architecture | None:
    """The first registered `Architecture` called `name` (tasks that share a network share
    its settings), or None."""
    for d in definitions():
        for candidate in d.architectures:
            if candidate.name == name:
                return candidate
    return None


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
