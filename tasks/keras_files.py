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

Safe mode is not a sandbox either: a config names the module and class each object is
rebuilt from, and tf-keras imports what it names (keras-team/tf-keras#910; CVE-2025-1550 in
Keras 3), and `TFOpLambda` calls any TensorFlow function by name (`io.write_file` too). So
before loading, the archive's `config.json` is read as data and every object in it must be
one of Keras's own layers, initializers, optimizers, ... (`code_in_archive`); a model that
needs anything else loads only when its user says they trust its code.
"""

from __future__ import annotations

import json
import os
import zipfile


class UnsafeModelFileError(ValueError):
    """A model file that is not a `.keras` archive (it could run code when loaded)."""


def save_keras(model, path: str | os.PathLike) -> None:
    """Write `model` to `path` as a `.keras` archive, whichever thread saves it."""
    import tensorflow as tf

    tf.keras.models.save_model(model, path, save_format="keras_v3")


# The namespaces a config may rebuild objects from: Keras's own public ones (what
# `Sequential` and functional models of built-in layers serialize to). Nothing else is
# imported on our say-so.
_KERAS_MODULES = frozenset({
    "keras", "keras.layers", "keras.initializers", "keras.regularizers", "keras.constraints",
    "keras.optimizers", "keras.optimizers.schedules", "keras.losses", "keras.metrics", "keras.activations",
    "tf_keras.src.engine.functional", "tf_keras.src.engine.sequential", "tf_keras.src.engine.training",
})
# Built-in layers that run code given in the config: marshalled Python, or a TF function by name.
_CODE_LAYERS = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__"})


def code_in_config(config) -> list[str]:
    """What in a `.keras` config would run code not ours when loaded: Lambda layers, objects
    from modules outside Keras, custom (registered) objects. Empty for a plain model."""
    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if "class_name" in node:
            name, module = node.get("class_name"), node.get("module")
            label = (node.get("config") or {}).get("name") if isinstance(node.get("config"), dict) else None
            what = f"{name} {label!r}" if label else str(name)
            if name in _CODE_LAYERS:
                function = (node.get("config") or {}).get("function") if isinstance(node.get("config"), dict) else None
                found.append(f"a {name} layer ({label or name}) calls TensorFlow's {function!r} by name"
                             if isinstance(function, str) else f"a {name} layer ({label or name}) carries Python code")
            elif module is not None and module not in _KERAS_MODULES:
                found.append(f"{what} comes from module {module!r}, which is not part of Keras")
            elif node.get("registered_name") not in (None, name):
                found.append(f"{what} is a custom object ({node.get('registered_name')})")
        for key, value in node.items():
            if key == "function" and isinstance(value, list):
                found.append("a layer's config carries marshalled Python bytecode")
            else:
                walk(value)

    walk(config)
    return list(dict.fromkeys(found))


def code_in_archive(path: str | os.PathLike) -> list[str]:
    """`code_in_config` of the archive at `path`, read as data (nothing is imported).

    Raises:
        UnsafeModelFileError: not a `.keras` archive, or one without a readable config.
    """
    _check_archive(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise UnsafeModelFileError(f"{os.fspath(path)} has no readable config.json ({exc}); "
                                   "it is not a model a mediajobs train job wrote") from None
    return code_in_config(config)


def _check_archive(path: str | os.PathLike) -> None:
    if not zipfile.is_zipfile(path):
        raise UnsafeModelFileError(
            f"{os.fspath(path)} is not a .keras archive; legacy model formats (HDF5, SavedModel) can run "
            "code when loaded, so they are refused. Re-export the model with a current mediajobs train job, "
            "or load it yourself where you trust it and save it with model.save('model.keras')")


def load_keras(path: str | os.PathLike, compile: bool = False, trust_code: bool = False, **kwargs):
    """The model in the `.keras` archive at `path`, loaded in safe mode after its config was
    checked for code (`code_in_archive`); `trust_code=True` skips both, for models whose
    author the user trusts.

    Raises:
        UnsafeModelFileError: `path` is not a zip archive (HDF5, SavedModel, anything else),
            or, unless `trust_code`, its config names code.
    """
    import tensorflow as tf

    if trust_code:
        _check_archive(path)
        return tf.keras.models.load_model(path, compile=compile, safe_mode=False, **kwargs)
    found = code_in_archive(path)
    if found:
        raise UnsafeModelFileError(
            f"{os.fspath(path)} would run code when loaded: {'; '.join(found)}. Models from a mediajobs "
            "train job have none; if you trust whoever wrote this model, set trust_model_code: true in the spec")
    return tf.keras.models.load_model(path, compile=compile, safe_mode=True, **kwargs)
