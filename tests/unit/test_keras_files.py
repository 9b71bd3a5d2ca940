"""Model files are `.keras` archives on write, and nothing else is loaded (tasks/keras_files.py)."""

from __future__ import annotations

import threading
import zipfile

import numpy as np
import pytest

import tasks  # noqa: F401  (tf-keras before TensorFlow loads)
from tasks.keras_files import UnsafeModelFileError, load_keras, save_keras


def _model(lambda_layer: bool = False):
    import tensorflow as tf

    layers = [tf.keras.layers.Input((3,)), tf.keras.layers.Dense(2)]
    if lambda_layer:
        layers.append(tf.keras.layers.Lambda(lambda x: x * 2))
    return tf.keras.Sequential(layers)


def test_every_save_in_a_worker_thread_writes_an_archive(tmp_path):
    # tf-keras writes HDF5 under a .keras name from the second save in a non-main thread
    # on; Ray Train's loop runs in one, and saves once an epoch.
    paths = [tmp_path / f"epoch-{i}.keras" for i in range(3)]

    def train_loop():
        model = _model()
        for path in paths:
            save_keras(model, path)

    worker = threading.Thread(target=train_loop)
    worker.start()
    worker.join()
    assert all(zipfile.is_zipfile(p) for p in paths)
    x = np.ones((1, 3), dtype="float32")
    assert np.allclose(load_keras(paths[-1])(x), load_keras(paths[0])(x))


def test_a_legacy_file_under_a_keras_name_is_refused_before_loading(tmp_path):
    model = _model(lambda_layer=True)
    legacy = tmp_path / "model.keras"
    model.save(tmp_path / "legacy.h5")  # HDF5: a Lambda's bytecode would run on load
    legacy.write_bytes((tmp_path / "legacy.h5").read_bytes())
    with pytest.raises(UnsafeModelFileError, match="not a .keras archive"):
        load_keras(legacy)


def test_an_archive_with_code_in_it_is_refused_by_safe_mode(tmp_path):
    path = tmp_path / "model.keras"
    save_keras(_model(lambda_layer=True), path)
    with pytest.raises(ValueError, match="(?i)lambda|unsafe|safe_mode"):
        load_keras(path)
