"""Models for the benchmark: built with the tasks' own code, exported like a train job's.

Scoring speed does not depend on what the weights learnt, so the scoring benchmarks use
freshly initialised models (seeded) instead of spending minutes training them first.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from jobs.bench.data import CLASSES
from tasks.keras_files import save_keras


def export_model(uri: str, task_name: str, architecture: str, task_config: dict,
                 class_names=CLASSES) -> str:
    """Build `architecture` for `task_name`, save it where a train job would; returns `uri`."""
    import tensorflow as tf

    from jobs.model_store import METADATA_FILE, MODEL_DIR, MODEL_FILE
    from jobs.storage import exists, parse_uri, upload_file, write_bytes
    from tasks import get_task

    model_dir = parse_uri(uri).as_prefix().join(MODEL_DIR)
    if exists(model_dir.join(METADATA_FILE).uri):
        return uri
    tf.keras.utils.set_random_seed(0)
    task = get_task(task_name)(**task_config)
    model = task.build_model(architecture, len(class_names), 1e-3)
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / MODEL_FILE
        save_keras(model, local)
        upload_file(local, model_dir.join(MODEL_FILE).uri)
    metadata = {"model_id": f"bench-{architecture}", "task": task_name, "architecture": architecture,
                "task_config": task_config, "input_shape": list(task.example_shape),
                "class_names": list(class_names), "files": [MODEL_FILE]}
    write_bytes(model_dir.join(METADATA_FILE).uri, json.dumps(metadata).encode())
    return uri
