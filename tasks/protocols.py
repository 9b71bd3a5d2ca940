"""The contracts between a task and the job layers, as protocols.

A task class keeps the ones its definition says it has; each task module states them after
its class (`_CONTRACT: type[Classifier] = ImageClassifier`), so mypy checks every task
against what `jobs/` calls:

- `MediaDecoder`: what a decode child runs (`jobs.workers.decode_isolation`, also the
  stylizer's full-size content decoder); `Decoder`: a task's decode step
  (`jobs.workers.decoding`).
- `Trainable`: a `Decoder` whose model a train job builds (its training plan: `tasks.training`).
- `Classifier`: a `Trainable` a score job classifies with: the tables its examples and
  objects go to (`jobs.runs.score`, nightly routes).
- `FittedFeatures`: a task whose model holds statistics fitted on the training set (the
  audio classifier's feature normalisation).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from tasks.media import DecodedMedia


@runtime_checkable
class MediaDecoder(Protocol):
    """What a decode child runs (`jobs.workers.decode_isolation`): bytes or a path to examples."""

    # Read-only members (properties), so a class that narrows them (a fixed tuple) conforms.
    @property
    def reads(self) -> str: ...  # "bytes": decode takes the object's bytes; "file": a local path

    @property
    def example_dtype(self) -> str: ...

    @property
    def example_shape(self) -> tuple[int, ...] | None: ...  # None: any (images at their own size)

    def decode(self, source: Any, /, deadline: float | None = None) -> DecodedMedia: ...


@runtime_checkable
class Decoder(MediaDecoder, Protocol):
    """A task's decode step (`jobs.workers.decoding`): which objects, a fixed example shape, and
    where each example sits in its object."""

    @property
    def name(self) -> str: ...

    @property
    def suffixes(self) -> tuple[str, ...]: ...  # object name suffixes it reads, lower case with the dot

    @property
    def position_columns(self) -> tuple[str, ...]: ...  # the keys of each example's `positions`

    @property
    def example_shape(self) -> tuple[int, ...]: ...


@runtime_checkable
class Trainable(Decoder, Protocol):
    def build_model(self, architecture: str, num_classes: int, learning_rate: float, /) -> Any: ...


@runtime_checkable
class Classifier(Trainable, Protocol):
    @property
    def output_tables(self) -> tuple[str, str | None]: ...  # (one row per example, one row per object or None)

    @property
    def count_column(self) -> str: ...  # the per-object table's count of examples ("" without one)


@runtime_checkable
class FittedFeatures(Protocol):
    def feature_moments(self, examples: Any, /) -> Any: ...

    def feature_statistics(self, moments: Any, /) -> dict[str, Any]: ...
