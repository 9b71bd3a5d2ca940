"""Keras model files: written as `.keras` archives, and only archives are loaded.

A `.keras` archive holds a JSON config and weights; tf-keras loads it in safe mode, which
refuses the one way such a file could carry code (a `Lambda` layer's marshalled Python
bytecode). Anything else under the same name goes to tf-keras's legacy loader, where safe
mode does not apply: an HDF5 file's `Lambda` layer runs its bytecode on load, and a
SavedModel runs its graph. So a model file is data only while it is an archive, and this
module refuses the rest.

tf-keras 2.21 also WRITES the legacy format by mistake: after the first `.keras` save in a
thread other than the main one, `saving_lib` restores its thread-local "v3 enabled" flag
to False, and every later `model.save("x.keras")` in that thread writes HDF5 under the
`.keras` name. Ray Train runs the training loop in such a thread, so checkpoints after
the first epoch were HDF5. `save_format="keras_v3"` asks for the archive explicitly.
"""

from __future__ import annotations

import os
import zipfile


class UnsafeModelFileError(ValueError):
    """A model file that is not a `.keras` archive (it could run code when loaded)."""


def save_keras(model, path: str | os.PathLike) -> None:
    """Write `model` to `path` as a `.keras` archive, whichever thread saves it."""
    import tensorflow as tf

    tf.keras.models.save_model(model, path, save_format="keras_v3")


def load_keras(path: str | os.PathLike, compile: bool = False, **kwargs):
    """The model in the `.keras` archive at `path`, loaded in safe mode.

    Raises:
        UnsafeModelFileError: `path` is not a zip archive (HDF5, SavedModel, anything else).
    """
    import tensorflow as tf

    if not zipfile.is_zipfile(path):
        raise UnsafeModelFileError(
            f"{os.fspath(path)} is not a .keras archive; legacy model formats (HDF5, SavedModel) can run "
            "code when loaded, so they are refused. Re-export the model with a current mediajobs train job, "
            "or load it yourself where you trust it and save it with model.save('model.keras')")
    return tf.keras.models.load_model(path, compile=compile, safe_mode=True, **kwargs)
