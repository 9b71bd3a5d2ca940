"""What every training worker is told, decided once by the driver (`jobs.runs.train`).

Ray Train hands `train_loop_per_worker` a dict; ours holds one `TrainLoopConfig` under
`LOOP_KEY`, so the worker side reads typed fields instead of string keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LOOP_KEY = "loop"


@dataclass(frozen=True)
class TrainLoopConfig:
    task: Any  # the task object (picklable): builds the model, names the training plan
    architecture: str
    epochs: int
    batch_size: int  # global: tf.distribute splits each step's batch across the workers
    steps_per_epoch: int  # examples // batch_size: an epoch covers the data on any worker count
    learning_rate: float
    class_names: list[str]
    datasets: list[str]  # "train" is split across workers; the others are read whole
    output: str
    seed: int = 0
    statistics: dict | None = None  # fitted on the training set (the audio model's normalisation)
    early_stopping: dict | None = None  # the spec's early_stopping section, as data
    shard_bytes: int = 0  # each worker's share of the decoded training examples
    whole_bytes: dict[str, int] = field(default_factory=dict)  # the datasets read whole, by name
    spec_name: str = ""  # the metrics' `spec` label

    def for_ray(self) -> dict[str, Any]:
        return {LOOP_KEY: self}

    @classmethod
    def from_ray(cls, config: dict[str, Any]) -> TrainLoopConfig:
        return config[LOOP_KEY]
