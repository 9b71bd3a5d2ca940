"""Where a model URI's model is, found from what is stored (jobs/models/store.py
`model_location`), not from the URI's name: a train output called `model`, a model folder
copied under another name, a legacy model, a version whose LATEST never moved; and what is
said when nothing is there. Real store (the session's SeaweedFS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.media import image_bytes

import tasks  # noqa: F401  (tf-keras before TensorFlow loads)
from jobs.errors import MediaJobsError, StorageError
from jobs.models.export import export_model
from jobs.models.store import fetch_model, model_location, prepare_model, resolve_model
from jobs.storage.objects import list_objects, read_bytes, write_bytes
from jobs.storage.checks import ensure_bucket

BUCKET = "s3://it-model-location/"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIAJOBS_CACHE", str(tmp_path / "cache"))
    fetch_model.cache_clear()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    """A tiny image classifier (8x8 RGB, classes a and b) in `model.keras`."""
    import tensorflow as tf

    from tasks.keras_files import save_keras

    folder = tmp_path_factory.mktemp("keras")
    inputs = tf.keras.Input((8, 8, 3))
    outputs = tf.keras.layers.Dense(2, activation="softmax")(tf.keras.layers.Flatten()(inputs))
    save_keras(tf.keras.Model(inputs, outputs), folder / "model.keras")
    return folder


def _export(keras_file: Path, output: str, model_id: str):
    ensure_bucket(BUCKET)
    return export_model(keras_file, {"model_id": model_id, "task": "image-classifier", "class_names": ["a", "b"],
                                     "input_shape": [8, 8, 3], "files": ["model.keras"]}, output)


def _copy(source: str, destination: str) -> None:
    for obj in list_objects(source):
        write_bytes(destination + obj.uri[len(source):], read_bytes(obj.uri))


def test_a_train_output_named_model_resolves_in_every_spelling_and_scores(local_stack, keras_file, mediajobs_cli):
    output = BUCKET + "named/model/"  # the train output itself is called model
    version = _export(keras_file, output, "nm-1")
    assert version.folder == f"{output}model/versions/nm-1/"
    for uri in (output, output + "model/", output + "@nm-1", output + "model/@nm-1", output + "model/versions/nm-1/"):
        assert resolve_model(uri).folder == version.folder, uri
    assert prepare_model(output).model_id == "nm-1"

    write_bytes(BUCKET + "named/photo.jpg", image_bytes(size=(8, 8)))
    result = mediajobs_cli("predict", output, BUCKET + "named/photo.jpg")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f"{BUCKET}named/photo.jpg: ") and "(top: " in result.stdout


def test_a_model_folder_copied_under_any_name_resolves_from_its_latest(local_stack, keras_file):
    output = BUCKET + "original/"
    _export(keras_file, output, "cp-1")
    _export(keras_file, output, "cp-2")
    copy = BUCKET + "copies/cnn-for-review/"  # neither a train output nor called model
    _copy(output + "model/", copy)
    assert model_location(copy).uri == copy
    assert resolve_model(copy).model_id == "cp-2" and resolve_model(copy + "@cp-1").model_id == "cp-1"
    assert resolve_model(copy + "versions/cp-1/").folder == copy + "versions/cp-1/"


def test_a_legacy_model_inside_an_output_named_model_resolves(local_stack, keras_file):
    output = BUCKET + "legacy/model/"
    folder = output + "model/"  # what an export from before versions wrote for this output
    write_bytes(folder + "model.keras", (keras_file / "model.keras").read_bytes())
    write_bytes(folder + "metadata.json", json.dumps({"model_id": "lg-1", "task": "image-classifier",
                                                     "class_names": ["a", "b"], "input_shape": [8, 8, 3],
                                                     "files": ["model.keras"]}).encode())
    for uri in (output, folder):
        version = resolve_model(uri)
        assert (version.folder, version.model_id, version.legacy) == (folder, "lg-1", True), uri
    assert prepare_model(output).model_id == "lg-1"


def test_a_pinned_version_resolves_where_latest_never_moved(local_stack, keras_file):
    """An export that stopped between writing its version and moving LATEST: the complete
    version is pinnable; the unpinned URI still says there is no model (the existing message)."""
    output = BUCKET + "stopped/model/"
    version = _export(keras_file, output, "st-1")
    _copy(version.folder, BUCKET + "stopped-copy/model/model/versions/st-1/")  # no LATEST there
    stopped = BUCKET + "stopped-copy/model/"
    assert resolve_model(stopped + "@st-1").folder == f"{stopped}model/versions/st-1/"
    assert resolve_model(stopped + "model/@st-1").model_id == "st-1"
    with pytest.raises(MediaJobsError, match=rf"^model: no exported model at {stopped}model/ \(expected LATEST"):
        resolve_model(stopped)


def test_the_folder_itself_comes_before_its_model_folder(local_stack, keras_file):
    """Both `X/LATEST` and `X/model/LATEST` stored (a train output at the parent and one at
    X): the documented order takes X's own."""
    parent = BUCKET + "nested/"
    _export(keras_file, parent, "outer-1")  # writes nested/model/LATEST
    _export(keras_file, parent + "model/", "inner-1")  # writes nested/model/model/LATEST
    assert resolve_model(parent + "model/").model_id == "outer-1"
    assert resolve_model(parent + "model/model/").model_id == "inner-1"
    assert resolve_model(parent).model_id == "outer-1"


def test_nothing_stored_keeps_the_messages_that_name_the_expected_folder(local_stack):
    ensure_bucket(BUCKET)
    with pytest.raises(MediaJobsError, match=rf"^model: no exported model at {BUCKET}none-here/model/ "):
        resolve_model(BUCKET + "none-here/")
    with pytest.raises(MediaJobsError, match=rf"^model: no exported model at {BUCKET}none/model/ "):
        resolve_model(BUCKET + "none/model/")  # called model: the folder itself is named
    with pytest.raises(MediaJobsError, match=r"no version x-1 at .*/none-here/model/versions/x-1/ \(versions there: "
                                             r"none\)"):
        resolve_model(BUCKET + "none-here/@x-1")
    with pytest.raises(StorageError, match=r"^model: cannot read s3://it-no-such-bucket-here/m/model/: NoSuchBucket: "
                                           r"the bucket does not exist; create it or fix the URI$"):
        resolve_model("s3://it-no-such-bucket-here/m/")
