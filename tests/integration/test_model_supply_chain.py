"""A model is untrusted input (jobs/models/store.py, jobs/models/export.py, tasks/keras_files.py,
tasks/saved_model_ops.py): its files stay in its folder, match their digests, carry no code
unless trusted, and a run loads exactly one version of it."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from support import lifecycle_driver
import tasks  # noqa: F401  (tf-keras before TensorFlow loads)
from jobs.errors import MediaJobsError
from jobs.models.export import export_model
from jobs.models.store import (ModelRefusedError, fetch_model, load_keras_model, prepare_model, read_model_metadata,
                              resolve_model)
from jobs.storage.objects import exists, list_objects, read_bytes, write_bytes
from jobs.storage.checks import ensure_bucket

pytestmark = pytest.mark.integration
BUCKET = "s3://it-supply/"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A model cache of its own, inside a folder the test can search for escaped files."""
    cache = tmp_path / "sandbox" / "cache"
    monkeypatch.setenv("MEDIAJOBS_CACHE", str(cache))
    fetch_model.cache_clear()
    return cache


def _keras_model(folder: Path, lambda_layer: bool = False, seed: int = 0) -> Path:
    import tensorflow as tf

    from tasks.keras_files import save_keras

    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((3,))
    outputs = tf.keras.layers.Dense(2, activation="softmax")(inputs)
    if lambda_layer:
        outputs = tf.keras.layers.Lambda(lambda x: x * 1.0)(outputs)
    folder.mkdir(parents=True, exist_ok=True)
    save_keras(tf.keras.Model(inputs, outputs), folder / "model.keras")
    return folder


def _metadata(model_id: str) -> dict:
    return {"model_id": model_id, "task": "image-classifier", "class_names": ["a", "b"], "input_shape": [3],
            "files": ["model.keras"]}


def _escaped(sandbox: Path) -> list[str]:
    """Files named like the attack's, anywhere near the cache or in /tmp."""
    found = [str(p) for p in sandbox.rglob("*.pth")]
    return found + [p for p in ("/tmp/a.pth", "/tmp/x.pth", "/tmp/evil.pth") if os.path.exists(p)]


@pytest.mark.parametrize("name", ["../../x.pth", "/tmp/a.pth", "model/../../../evil.pth", "a\\..\\..\\x.pth"])
def test_a_file_name_that_leaves_the_model_folder_is_refused_before_any_download(local_stack, cache, name):
    ensure_bucket(BUCKET)
    uri = f"{BUCKET}names-{hashlib.sha256(name.encode()).hexdigest()[:8]}/"
    write_bytes(uri + "model/metadata.json", json.dumps({**_metadata("evil"), "files": [name]}).encode())
    with pytest.raises(ModelRefusedError, match=r"lists .*must be relative names inside its folder") as refused:
        prepare_model(uri)
    assert refused.value.exit_code == 2 and "\n" not in refused.value.message
    assert _escaped(cache.parent) == [] and not cache.exists()

    # The same names in a version's digests are refused too.
    version = f"{uri}model/versions/evil/"
    write_bytes(version + "metadata.json", json.dumps({**_metadata("evil"), "digests": {name: "0" * 64}}).encode())
    write_bytes(uri + "model/LATEST", json.dumps({"model_id": "evil"}).encode())
    with pytest.raises(ModelRefusedError, match="must be relative names inside its folder"):
        prepare_model(uri)
    assert _escaped(cache.parent) == []


def test_a_linked_file_in_a_local_model_folder_is_refused(tmp_path, cache):
    outside = tmp_path / "outside.keras"
    _keras_model(tmp_path / "real")
    (tmp_path / "real" / "model.keras").rename(outside)
    model = tmp_path / "linked" / "model"
    model.mkdir(parents=True)
    (model / "metadata.json").write_text(json.dumps(_metadata("linked")))
    (model / "model.keras").symlink_to(outside)
    with pytest.raises(ModelRefusedError, match="is a symbolic link"):
        prepare_model(str(tmp_path / "linked"))
    assert not cache.exists()


def test_versions_latest_and_pins(local_stack, tmp_path):
    ensure_bucket(BUCKET)
    output = BUCKET + "versions/"
    first = export_model(_keras_model(tmp_path / "one", seed=1), _metadata("m-1"), output)
    assert first.uri == f"{output}model/@m-1" and first.folder == f"{output}model/versions/m-1/"
    assert resolve_model(output).model_id == "m-1"
    export_model(_keras_model(tmp_path / "two", seed=2), _metadata("m-2"), output)
    # `model/` means LATEST; a pin names one version, whichever spelling.
    assert resolve_model(output).model_id == resolve_model(output + "model/").model_id == "m-2"
    assert resolve_model(output + "@m-1").model_id == resolve_model(output + "model/@m-1").model_id == "m-1"
    assert resolve_model(output + "model/versions/m-1/").model_id == "m-1"
    assert json.loads(read_bytes(output + "model/LATEST"))["previous"] == "m-1"
    metadata = read_model_metadata(output + "@m-2")
    assert set(metadata["digests"]) == {"model.keras"} and len(metadata["digests"]["model.keras"]) == 64
    with pytest.raises(MediaJobsError, match=r"no version m-3 at .*versions there: m-1, m-2"):
        resolve_model(output + "@m-3")

    # Each worker loads the version the run resolved, and refuses another.
    model, loaded = load_keras_model(first.uri, "m-1")
    assert loaded["model_id"] == "m-1" and model.output_shape == (None, 2)
    with pytest.raises(ModelRefusedError, match="is now model 'm-2', not 'm-1'"):
        fetch_model(output, "m-1")


def test_an_output_named_model_holds_its_models_in_model_model(local_stack, tmp_path):
    ensure_bucket(BUCKET)
    output = BUCKET + "named/model/"  # a train job's output that happens to be called model
    version = export_model(_keras_model(tmp_path / "one"), _metadata("n-1"), output)
    assert version.folder == f"{output}model/versions/n-1/"
    assert resolve_model(output).model_id == resolve_model(output + "model/").model_id == "n-1"


def test_latest_moves_only_over_the_version_its_export_read(local_stack, tmp_path, monkeypatch):
    """Two exports at once: the one whose LATEST changed under it is told, and its version
    stays complete and pinnable."""
    import jobs.models.export as model_export

    ensure_bucket(BUCKET)
    output = BUCKET + "racing/"
    export_model(_keras_model(tmp_path / "one", seed=1), _metadata("r-1"), output)
    stale = model_export.read_pointer(output + "model/LATEST")
    export_model(_keras_model(tmp_path / "two", seed=2), _metadata("r-2"), output)
    reads = iter([stale])  # this export's read happened before r-2 moved LATEST; later reads are real
    real = model_export.read_pointer
    monkeypatch.setattr(model_export, "read_pointer", lambda uri: next(reads, None) or real(uri))
    with pytest.raises(MediaJobsError, match=r"another export moved .*LATEST to model r-2 .*@r-3"):
        export_model(_keras_model(tmp_path / "three", seed=3), _metadata("r-3"), output)
    monkeypatch.undo()
    assert resolve_model(output).model_id == "r-2"
    assert resolve_model(output + "@r-3").model_id == "r-3"


def test_a_changed_model_file_is_refused(local_stack, tmp_path):
    ensure_bucket(BUCKET)
    output = BUCKET + "tampered/"
    version = export_model(_keras_model(tmp_path / "good"), _metadata("t-1"), output)
    write_bytes(version.folder + "model.keras", (_keras_model(tmp_path / "other", seed=9) / "model.keras").read_bytes())
    with pytest.raises(ModelRefusedError, match="does not match the digest recorded at export"):
        prepare_model(output)


def test_a_model_with_a_lambda_layer_loads_only_when_trusted(local_stack, tmp_path):
    ensure_bucket(BUCKET)
    output = BUCKET + "lambda/"
    export_model(_keras_model(tmp_path / "lambda", lambda_layer=True), _metadata("l-1"), output)
    with pytest.raises(ModelRefusedError, match=r"would run code when loaded: a Lambda layer .*trust_model_code: true"):
        prepare_model(output)
    with pytest.raises(ModelRefusedError, match="Lambda"):
        load_keras_model(output, "l-1")  # the workers check too
    assert prepare_model(output, trust_code=True).model_id == "l-1"
    model, _ = load_keras_model(output, "l-1", trust_code=True)
    assert model.output_shape == (None, 2)


def test_an_archive_naming_a_module_outside_keras_is_refused_without_importing_it(tmp_path):
    from tasks.keras_files import UnsafeModelFileError, code_in_archive, load_keras

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:  # tf-keras#910: a config that imports what it names
        archive.writestr("config.json", json.dumps({
            "module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
                {"module": "os", "class_name": "system", "config": {"name": "touch /tmp/pwned"},
                 "registered_name": None},
                {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2},
                 "registered_name": "Custom>Dense"}]}}))
    found = code_in_archive(path)
    assert any("from module 'os'" in f for f in found) and any("custom object (Custom>Dense)" in f for f in found)
    with pytest.raises(UnsafeModelFileError, match="would run code when loaded"):
        load_keras(path)
    assert not os.path.exists("/tmp/pwned")


def test_a_saved_model_that_writes_files_is_refused(tmp_path):
    import tensorflow as tf

    from tasks.saved_model_ops import UnsafeSavedModelError
    from tasks.style_transfer import load_stylizer

    class Writes(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)] * 2)
        def __call__(self, content, style):
            tf.io.write_file(str(tmp_path / "written"), tf.strings.as_string(tf.reduce_sum(content)))
            return [content]

    module = Writes()
    tf.saved_model.save(module, str(tmp_path / "module"), signatures={"serving_default": module.__call__})
    with pytest.raises(UnsafeSavedModelError, match=r"ops that reach outside its tensors \(WriteFile\)"):
        load_stylizer(str(tmp_path / "module"))
    loaded = load_stylizer(str(tmp_path / "module"), trust_code=True)  # trusted: it runs, and writes
    loaded(tf.zeros((1, 2, 2, 3)), tf.zeros((1, 2, 2, 3)))
    assert (tmp_path / "written").exists()


def test_a_model_from_before_versions_still_loads(local_stack, tmp_path):
    ensure_bucket(BUCKET)
    output = BUCKET + "legacy/"
    folder = _keras_model(tmp_path / "legacy")
    write_bytes(output + "model/model.keras", (folder / "model.keras").read_bytes())
    write_bytes(output + "model/metadata.json", json.dumps(_metadata("legacy-1")).encode())
    version = prepare_model(output)
    assert version.legacy and version.model_id == "legacy-1" and version.uri == output + "model/"
    model, metadata = load_keras_model(version.uri, "legacy-1")
    assert metadata["model_id"] == "legacy-1" and model.output_shape == (None, 2)


def test_a_spec_pins_a_version_or_says_how(tmp_path):
    from jobs.errors import SpecError
    from jobs.spec.load import parse_spec

    base = {"version": 1, "kind": "score", "name": "pinned", "task": "image-classifier",
            "input": "s3://archive/", "output": "s3://scores/"}
    spec = parse_spec({**base, "model": "s3://models/cnn/@cnn-1a2b", "trust_model_code": True}, "pinned.yaml")
    assert spec.model == "s3://models/cnn/@cnn-1a2b" and spec.trust_model_code
    with pytest.raises(SpecError, match=r"pinned.yaml.*model.*pins a model version as .*@<model_id>"):
        parse_spec({**base, "model": "s3://models/cnn/@bad id!"}, "pinned.yaml")


def test_a_reexport_between_a_killed_night_and_its_rerun_rescores(local_stack, monkeypatch):
    """The first attempt stages its rows and dies before its commit; the model is re-exported;
    the re-run scores again instead of reusing the old model's rows."""
    import jobs.runs.nightly as nightly_module
    from jobs.storage.delta import read_table
    from jobs.nightly.manifest import current_snapshot, read_ledger

    ensure_bucket(BUCKET)
    archive, output = BUCKET + "night-archive/", BUCKET + "night-scores/"
    for name in ("img-0.jpg", "img-1.jpg", "bad-2.jpg"):
        write_bytes(archive + name, name.encode())
    model = lifecycle_driver.stub_model(BUCKET + "night-model/", "night-a")

    def killed(self, *args):
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(nightly_module.Night, "commit", killed)
    with pytest.raises(RuntimeError, match="killed"):
        lifecycle_driver.nightly(output, archive, model, "2026-12-01")
    monkeypatch.undo()
    assert any("/scored/" in o.uri for o in list_objects(output + "_staging/"))  # night-a's rows, staged

    lifecycle_driver.stub_model(BUCKET + "night-model/", "night-b")  # re-exported: LATEST moves
    result = lifecycle_driver.nightly(output, archive, model, "2026-12-01")
    assert result.committed and result.resumed == 0
    rows = read_table(output + "predictions/").to_pylist() + read_table(output + "errors/").to_pylist()
    assert len(rows) == 3 and {r["model_id"] for r in rows} == {"night-b"}
    ledger = {e.uri: e.model_id for e in read_ledger(current_snapshot(output))}
    assert ledger == {archive + n: "night-b" for n in ("img-0.jpg", "img-1.jpg", "bad-2.jpg")}
    assert exists(BUCKET + "night-model/model/versions/night-a/metadata.json")  # the old version stays
