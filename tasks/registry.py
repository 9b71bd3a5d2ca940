"""Task names to task classes, through one explicit registry."""

from __future__ import annotations

import importlib
from typing import Callable

# Task modules register themselves on import; this maps a name to its module so the
# registry can import lazily (TensorFlow-heavy modules load only when used).
_MODULES = {
    "image-classifier": "tasks.image_classifier",
}
_REGISTRY: dict[str, type] = {}


class Task:
    """Base of all tasks: model-specific knowledge, nothing about Ray or storage."""

    name: str = ""


def register(name: str) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def task_names() -> list[str]:
    return sorted(_MODULES)


def get_task(name: str) -> type:
    """The task class registered under `name`.

    Raises:
        KeyError: with the list of valid names, for an unknown task.
    """
    if name not in _MODULES:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(task_names())}")
    if name not in _REGISTRY:
        importlib.import_module(_MODULES[name])
    return _REGISTRY[name]
