"""What a model version is: its `metadata.json`, as one typed model.

Written by one function (`jobs.models.export.export_model`, which adds the digests) and read
by one (`ModelMetadata.from_document`, through `jobs.models.store`). The train job records
how the model was made beside what scoring needs; task-specific entries (a GAN's `generator`,
a stylizer's `stylizer` and `encoder_weights`) are kept as extra keys. Tools and tests that
look at what was recorded may read it by key, as the stored document (`metadata["history"]`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from jobs.errors import MediaJobsError
from tasks.training import MODEL_FILE  # a classifier's model file, as its training plan writes it

__all__ = ["MODEL_FILE", "ModelMetadata", "ModelRefusedError"]


class ModelRefusedError(MediaJobsError):
    """A model that could write outside its folder, was changed after export, or carries code."""

    headline = "model refused"
    exit_code = 2


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, protected_namespaces=())

    # What scoring and the model store need.
    model_id: str = ""  # empty only for a model exported before versions
    task: str | None = None
    architecture: str | None = None
    task_config: dict[str, Any] | None = None  # the task's constructor arguments
    input_shape: list[int] | None = None  # one example's shape
    class_names: list[str] = []  # a classifier's, in label order; none for generators and stylizers
    files: list[str] = [MODEL_FILE]  # the entries of the version folder (files or folders)
    digests: dict[str, str] | None = None  # sha256 per file; none before versions
    # How it was made (train jobs).
    spec_name: str | None = None
    epochs: int | None = None
    exported_epoch: int | None = None
    metrics: dict[str, float] | None = None
    history: list[dict[str, Any]] | None = None
    batch_size: int | None = None
    batch_size_reason: str | None = None
    feature_statistics: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None
    examples: int | None = None
    skipped: int | None = None
    workers: list[dict[str, Any]] | None = None
    exported_at: str | None = None

    @classmethod
    def from_document(cls, document: Any, where: str) -> ModelMetadata:
        """The metadata stored at `where`, checked for types.

        Raises:
            ModelRefusedError: not a mapping, or a field of the wrong type (named).
        """
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(map(str, first["loc"])) or "the document"
            raise ModelRefusedError(f"model: {where} is not a model's metadata ({field}: {first['msg']}); "
                                 "re-export the model with mediajobs train") from None

    @property
    def example_shape(self) -> tuple[int, ...]:
        """One example's shape, as the model takes it.

        Raises:
            ModelRefusedError: the metadata records none (not a model a classifier job can feed).
        """
        if self.input_shape is None:
            raise ModelRefusedError(f"model: {self.model_id or 'this model'} records no input_shape in its metadata; "
                                    "re-export the model with mediajobs train")
        return tuple(int(v) for v in self.input_shape)

    def to_json(self) -> bytes:
        """The stored document: what was set, with the extra keys."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2).encode()

    def __getitem__(self, key: str) -> Any:
        """The stored document's entry `key` (KeyError when it was not recorded)."""
        document = self.model_dump(exclude_unset=True)
        return document[key]
