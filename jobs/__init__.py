"""mediajobs job layer: specs, storage, runners, submission and the CLI.

The one side effect on import: TensorFlow must load tf-keras (Keras 2), because
Keras 3 breaks MultiWorkerMirroredStrategy (shared/FACTS.md). The switch has to be
in the environment before TensorFlow is first imported, in every process.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from jobs.errors import JobFailedError, MediaJobsError, SpecError, StorageError  # noqa: E402

__all__ = ["MediaJobsError", "SpecError", "StorageError", "JobFailedError"]
