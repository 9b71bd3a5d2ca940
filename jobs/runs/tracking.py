"""Optional MLflow tracking of a train job (`pip install mediajobs[mlflow]`), on when
`MLFLOW_TRACKING_URI` is set where the driver runs.

One MLflow run per exported model, in the experiment `MLFLOW_EXPERIMENT_NAME` (default: the
spec's name): the spec's training, model and resources fields as params, every epoch's
metrics at step = the epoch, the exported files and `metadata.json` as the artifact
`model/`, and the `model_id` (with the task and the output) as tags. Logged by the driver
once the model is exported, from the epochs' history: the workers need no MLflow. A store
that refuses is a note, not a failed job: the model is exported either way.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TRACKING_ENV = "MLFLOW_TRACKING_URI"


def _flat(prefix: str, value: Any) -> dict[str, str]:
    """Nested spec fields as MLflow params: `training.early_stopping.patience` -> "3"."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: str(value)[:500]}  # MLflow's limit on a param's value


def track_training(spec, metadata, source: Path, exported: Iterable[str], echo: Callable[[str], None]) -> str | None:
    """Log the job to MLflow when `MLFLOW_TRACKING_URI` is set; returns the MLflow run id."""
    uri = os.environ.get(TRACKING_ENV)
    if not uri:
        return None
    try:
        import mlflow
    except ImportError:
        echo(f"note: {TRACKING_ENV} is set but MLflow is not installed: pip install 'mediajobs[mlflow]'")
        return None
    try:
        return _log(mlflow, spec, metadata, source, list(exported))
    except Exception as exc:  # noqa: BLE001 - MLflow's and its store's errors alike
        echo(f"note: the job was not tracked in MLflow ({uri}): {type(exc).__name__}: {exc}")
        return None


def _log(mlflow, spec, metadata, source: Path, exported: list[str]) -> str:
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or spec.name)
    fields = spec.model_dump(mode="json", include={"task", "model", "training", "resources"})
    with mlflow.start_run(run_name=metadata.model_id) as run:
        mlflow.set_tags({"mediajobs.model_id": metadata.model_id, "mediajobs.task": spec.task,
                         "mediajobs.output": spec.output})
        mlflow.log_params(_flat("", fields))
        for epoch in metadata.history or []:
            numbers = {k: float(v) for k, v in epoch.items() if k != "epoch" and isinstance(v, (int, float))}
            mlflow.log_metrics(numbers, step=int(epoch["epoch"]))
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, "metadata.json").write_text(json.dumps(metadata.model_dump(mode="json"), indent=2))
            mlflow.log_artifacts(folder, artifact_path="model")
        for entry in exported:
            path = source / entry
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=f"model/{entry}")
            elif path.exists():
                mlflow.log_artifact(str(path), artifact_path="model")
        return run.info.run_id
