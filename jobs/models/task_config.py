"""From a spec to the keyword arguments of its task class (recorded in the model metadata).

Scoring rebuilds the task from the model's recorded config, so features are computed
exactly as in training; a score spec may only change what does not affect the model
(e.g. how often video frames are sampled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobs.models.metadata import ModelMetadata


def task_config_for(spec) -> dict:
    """The task's constructor arguments for a train spec."""
    config: dict = {}
    for name in ("input_shape", "image_shape", "latent_dim", "image_size", "encoder"):
        value = getattr(spec.model, name, None)
        if value is not None:
            config[name] = tuple(value) if isinstance(value, (list, tuple)) else value
    config.update(scoring_overrides(spec))
    audio = getattr(spec, "audio", None)
    if audio is not None:
        config.update(audio.model_dump())
    return config


def scoring_overrides(spec) -> dict:
    """Task arguments a spec may set that do not change what the model sees."""
    frames = getattr(spec, "frames", None)
    return frames.model_dump() if frames is not None else {}


def task_config_from_metadata(metadata: ModelMetadata, spec=None) -> dict:
    """The task arguments to score with: the model's, plus the score spec's overrides."""
    # Models from before task_config was recorded were image classifiers, built from input_shape.
    recorded = metadata.task_config
    config = dict(recorded if recorded is not None else {"input_shape": metadata.input_shape})
    if spec is not None:
        config.update(scoring_overrides(spec))
    for name in ("input_shape", "image_shape"):
        if name in config:
            config[name] = tuple(config[name])
    return config
