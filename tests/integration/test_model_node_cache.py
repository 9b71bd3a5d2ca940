"""One model download per node (jobs/models/store.py `fetch_model`, jobs/models/node_cache.py):
processes on a node share one copy of a version, each checks it against the digests it
resolved itself, a copy changed on disk is downloaded again, and a stored file that does not
match its digest is still refused. Real store (the session's SeaweedFS), real processes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.processes import run_together

import tasks  # noqa: F401  (tf-keras before TensorFlow loads)
from jobs.models.store import ModelRefusedError, fetch_model
from jobs.storage.checks import ensure_bucket
from jobs.storage.objects import write_bytes

BUCKET = "s3://it-node-cache/"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A model cache of its own; processes this test spawns inherit it."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEDIAJOBS_CACHE", str(cache))
    fetch_model.cache_clear()
    return cache / "mediajobs-models"


def _shared_folder(cache: Path, version) -> Path:
    return cache / f"{hashlib.sha256(version.folder.encode()).hexdigest()[:16]}-{version.model_id}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch_counting_downloads(uri: str, model_id: str, start, results) -> None:
    """A scoring actor's start: fetch the model, counting the files this process downloaded
    (a spy around the real download: the store is real)."""
    import jobs.models.store as store

    downloaded = []
    real = store.download_file

    def counted(source: str, target) -> None:
        downloaded.append(source)
        real(source, target)

    store.download_file = counted
    start.wait()
    local = store.fetch_model(uri, model_id)
    results.put((str(local), len(downloaded), (local / "model.keras").stat().st_ino))


def test_processes_on_a_node_download_a_version_once(local_stack, export_test_model, cache):
    ensure_bucket(BUCKET)
    version = export_test_model(BUCKET + "shared/", model_id="shared-1")
    found = run_together(_fetch_counting_downloads, (version.uri, "shared-1"), 3)
    folder = _shared_folder(cache, version)
    assert {local for local, _, _ in found} == {str(folder)}
    assert sorted(count for _, count, _ in found) == [0, 0, 2]  # metadata.json and model.keras, once
    assert len({inode for _, _, inode in found}) == 1  # one copy, never replaced
    assert _sha256(folder / "model.keras") == version.metadata.digests["model.keras"]
    assert folder.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in cache.iterdir()) == [folder.name, folder.name + ".lock"]

    assert fetch_model(version.uri, "shared-1") == folder  # this process uses the same copy
    assert (folder / "model.keras").stat().st_ino == found[0][2]


def test_a_shared_copy_changed_on_disk_is_downloaded_again(local_stack, export_test_model, cache):
    ensure_bucket(BUCKET)
    version = export_test_model(BUCKET + "changed/", model_id="changed-1")
    folder = fetch_model(version.uri, "changed-1")
    assert folder == _shared_folder(cache, version)
    model_file = folder / "model.keras"
    changed = bytearray(model_file.read_bytes())
    changed[len(changed) // 2] ^= 0xFF
    model_file.write_bytes(bytes(changed))

    fetch_model.cache_clear()  # another actor, or this one's next run
    assert fetch_model(version.uri, "changed-1") == folder
    assert _sha256(folder / "model.keras") == version.metadata.digests["model.keras"]

    # The metadata file has no digest: a copy whose metadata says something else is replaced too.
    metadata = json.loads((folder / "metadata.json").read_text())
    (folder / "metadata.json").write_text(json.dumps({**metadata, "class_names": ["cat", "dog"]}))
    fetch_model.cache_clear()
    assert json.loads((fetch_model(version.uri, "changed-1") / "metadata.json").read_text()) == metadata
    assert sorted(p.name for p in cache.iterdir()) == [folder.name, folder.name + ".lock"]


def test_a_stored_file_that_does_not_match_its_digest_is_still_refused(local_stack, export_test_model, cache):
    ensure_bucket(BUCKET)
    version = export_test_model(BUCKET + "tampered/", model_id="tampered-1")
    write_bytes(version.folder + "model.keras", b"not the exported model")
    with pytest.raises(ModelRefusedError, match=rf"^model: {version.folder}model.keras does not match the digest "
                                                r"recorded at export; the file was changed after the model was "
                                                r"exported. Re-export the model with mediajobs train$"):
        fetch_model(version.uri, "tampered-1")
    folder = _shared_folder(cache, version)
    assert sorted(p.name for p in cache.iterdir()) == [folder.name + ".lock"]  # nothing half made is left
