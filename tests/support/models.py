"""Test models exported as a train job exports them (the `export_test_model` fixture).

The Keras model is built by the task's own `build_model` (or given), saved with the
tasks' `save_keras`, and published by `jobs.models.export.export_model`, the function the
train runner calls: files with their digests, `metadata.json`, then `LATEST`. Untrained
weights (seeded) are enough: the tests that use them are about scoring and accounting,
not accuracy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

from jobs.models.export import export_model
from jobs.models.store import MODEL_FILE, ModelVersion

CLASSES = tuple(f"class{i}" for i in range(10))


def export_untrained_model(output_uri: str, task: str = "image-classifier", architecture: str = "cifar10-cnn",
                           task_config: dict[str, Any] | None = None, class_names: Sequence[str] = CLASSES,
                           model_id: str | None = None, seed: int = 0, keras_model: Any = None) -> ModelVersion:
    """Export a seeded, untrained `architecture` of `task` under `output_uri`'s `model/`.

    Args:
        output_uri: a train job's `output` (the version goes to `<output>model/versions/<id>/`).
        task, architecture, task_config: as a train spec names them (`task_config_for`).
        class_names: the classes the model's outputs stand for.
        model_id: the version's id (default `test-<architecture>`).
        seed: Keras' random seed for the initial weights.
        keras_model: a model to export instead of the task's `architecture` (its input shape
            is then the model's own).

    Returns:
        The exported version, as `export_model` returns it.
    """
    import tensorflow as tf

    from tasks import get_task
    from tasks.keras_files import save_keras

    task_config = dict(task_config or {})
    if keras_model is None:
        tf.keras.utils.set_random_seed(seed)
        built = get_task(task)(**task_config)
        keras_model, input_shape = built.build_model(architecture, len(class_names), 1e-3), list(built.example_shape)
    else:
        input_shape = [int(size) for size in keras_model.input_shape[1:]]
    metadata = {"model_id": model_id or f"test-{architecture}", "task": task, "architecture": architecture,
                "task_config": task_config, "input_shape": input_shape, "class_names": list(class_names),
                "files": [MODEL_FILE]}
    with tempfile.TemporaryDirectory() as folder:
        save_keras(keras_model, Path(folder) / MODEL_FILE)
        return export_model(Path(folder), metadata, output_uri)
