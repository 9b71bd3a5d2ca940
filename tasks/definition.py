"""What a task is, for the layers that validate, plan and run jobs: one `TaskDefinition` per
task module, registered in `tasks.registry`.

The spec layer, nightly routes, `predict` and the runners ask a definition what a task can
do (its architectures and their fields, the spec sections and data it takes, the media it
scores, which job kind uses its models) instead of testing its name. A definition holds no
TensorFlow: reading one costs an import of the task module (numpy and the decoders).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tasks.architecture import Architecture, Outputs
from tasks.training import CLASSIFIER_PLAN, TrainingPlan

__all__ = ["JOB_OF", "Architecture", "Outputs", "Produces", "TaskDefinition"]

# Which job kind uses a task's trained model.
Produces = Literal["classes", "images", "stylizations"]
JOB_OF = {"classes": "score", "images": "generate", "stylizations": "stylize"}


@dataclass(frozen=True)
class TaskDefinition:
    """Everything the job layers know about a task.

    - `architectures`: the first is what a spec gets when its model names none.
    - `produces`: "classes" (a score job classifies with the model), "images" (a generate
      job samples it) or "stylizations" (a stylize job applies it).
    - `modality`: the media a classifier scores ("image", "video", "audio"); nightly routes
      send objects to a task by it.
    - `sections`: spec sections the task takes beyond the common ones ("frames", "audio",
      "annotate"); `filled_sections` get their defaults written into a train spec (they
      shape the model's input, so the model records them); `scoring_sections` may be set by
      a score spec (they do not change what the model sees).
    - `data`: the fields of a train spec's `data` section the task reads; `data_hints` say
      why a required one is needed.
    - `training_plan`: what a train job does that depends on the task (`tasks.training`): the
      classifiers' plan unless the task brings its own.
    - `classifies_images`: its examples are images (stills or video frames), so `predict`
      and a generate job's quality check can feed it images.
    - `job_hint`: for a task a score job cannot run, what to use instead.
    - `example_table`: for media with many examples per object, the nightly table of the
      per-example rows (a video's frames, an audio file's windows).
    """

    name: str
    task_class: type
    architectures: tuple[Architecture, ...]
    produces: Produces = "classes"
    modality: str | None = None
    sections: tuple[str, ...] = ()
    filled_sections: tuple[str, ...] = ()
    scoring_sections: tuple[str, ...] = ()
    data: tuple[str, ...] = ("train", "validation")
    data_hints: Mapping[str, str] = field(default_factory=dict)
    training_plan: TrainingPlan = CLASSIFIER_PLAN
    classifies_images: bool = False
    job_hint: str = ""
    example_table: str | None = None

    @property
    def job_kind(self) -> str:
        """The job kind that uses this task's models: score, generate or stylize."""
        return JOB_OF[self.produces]

    @property
    def is_classifier(self) -> bool:
        return self.produces == "classes"

    @property
    def default_architecture(self) -> Architecture:
        return self.architectures[0]

    def architecture(self, name: str) -> Architecture:
        """Raises KeyError for an architecture this task does not train."""
        for candidate in self.architectures:
            if candidate.name == name:
                return candidate
        raise KeyError(f"task {self.name} trains {' or '.join(a.name for a in self.architectures)}, not {name}")
