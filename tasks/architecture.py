"""A network a task trains (`Architecture`): the spec's `model` fields it takes, and how its
outputs become class probabilities. Task definitions (`tasks.definition`) list them, and
training plans (`tasks.training`) read them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# How a model's output becomes one probability per class.
Outputs = Literal["softmax", "sigmoid", "none"]


@dataclass(frozen=True)
class Architecture:
    """A network a task can train, and the spec's `model` fields it takes.

    `fields` maps each model field the architecture takes to its default (the others are
    refused, so a typo'd spec cannot silently train something its author did not mean);
    `refused_hint` says where such a setting goes instead. `choices` names the values a
    field that picks one of a few parts may take (AdaIN's `encoder`). `check` validates the
    fields together and returns the problem as a finished sentence ("field: what is wrong; fix").
    """

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    refused_hint: str = ""
    outputs: Outputs = "softmax"
    classes: int | None = None  # a fixed number of classes (a sigmoid head has 2)
    check: Callable[[Mapping[str, Any]], str | None] | None = None
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def class_probabilities(self, outputs: Any) -> Any:
        """The model's outputs ([n, k] float) as [n, classes] probabilities."""
        import numpy as np

        outputs = np.asarray(outputs, dtype=np.float64)
        if self.outputs == "sigmoid":  # one unit: the probability of the second class
            return np.concatenate([1.0 - outputs[:, :1], outputs[:, :1]], axis=1)
        return outputs
