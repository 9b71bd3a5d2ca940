"""mediajobs tasks: the model-specific code that runs on Ray workers.

Each task module owns its model builder, decoder and pre/post-processing, and knows
nothing about Ray or storage. Importing this package sets the one environment switch
TensorFlow needs before it loads (tf-keras, see shared/FACTS.md); TensorFlow itself is
imported lazily inside the task functions.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tasks.registry import Task, get_task, register, task_names  # noqa: E402

__all__ = ["Task", "get_task", "register", "task_names"]
