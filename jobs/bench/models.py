"""Models for the benchmark: built with the tasks' own code, exported like a train job's.

Scoring speed does not depend on what the weights learnt, so the scoring benchmarks use
freshly initialised models (seeded) instead of spending minutes training them first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from jobs.bench.data import CLASSES
from tasks.keras_files import save_keras


def export_model(uri: str, task_name: str, architecture: str, task_config: dict,
                 class_names=CLASSES) -> str:
    """Build `architecture` for `task_name`, save it where a train job would; returns `uri`."""
    import tensorflow as tf

    from jobs.models.export import export_model as export_version
    from jobs.models.store import LATEST_FILE, MODEL_DIR, MODEL_FILE
    from jobs.storage.objects import exists, parse_uri
    from tasks import get_task

    if exists(parse_uri(uri).as_prefix().join(MODEL_DIR, LATEST_FILE).uri):
        return uri
    tf.keras.utils.set_random_seed(0)
    task = get_task(task_name)(**task_config)
    model = task.build_model(architecture, len(class_names), 1e-3)
    with tempfile.TemporaryDirectory() as folder:
        save_keras(model, Path(folder) / MODEL_FILE)
        metadata = {"model_id": f"bench-{architecture}", "task": task_name, "architecture": architecture,
                    "task_config": task_config, "input_shape": list(task.example_shape),
                    "class_names": list(class_names), "files": [MODEL_FILE]}
        export_version(Path(folder), metadata, uri)
    return uri


def graph_model(model_uri: str):
    """(predict, class names) of an exported model: the model called as a graph, shape-generic
    (`tf.function`, as our actors call it), for every runner that scores with it."""
    import numpy as np
    import tensorflow as tf

    from jobs.models.store import load_keras_model

    model, metadata = load_keras_model(model_uri)
    predict = tf.function(lambda examples: model(examples, training=False), reduce_retracing=True)
    return predict, np.array(metadata.class_names)
