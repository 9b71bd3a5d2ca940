"""A folder shared by every process on a node (jobs/models/node_cache.py): filled once under a
lock by one process while the others wait, never seen half written, thrown away and filled
again when it is not intact; and a model in a local folder is still fetched per process
(jobs/models/store.py). Real processes (spawn) and real files."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from support.processes import run_together

from jobs.models.node_cache import shared_folder
from jobs.models.store import fetch_model

GOOD = b"the model's bytes"


def _is_good(folder: Path) -> bool:
    try:
        return (folder / "model.bin").read_bytes() == GOOD
    except OSError:
        return False


def _fill_slowly(log: Path):
    """A fill that takes long enough for another process to arrive meanwhile, and says it ran."""
    def fill(folder: Path) -> None:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        (folder / "model.bin").write_bytes(GOOD[:5])
        time.sleep(0.5)  # a reader must never see this half file
        (folder / "model.bin").write_bytes(GOOD)
    return fill


def _fetch_in_a_process(root: str, log: str, start, results) -> None:
    start.wait()
    folder = shared_folder(Path(root), "cnn-1", _is_good, _fill_slowly(Path(log)))
    results.put((str(folder), _is_good(folder)))


def _die_while_filling(root: str) -> None:
    def fill(folder: Path) -> None:
        (folder / "model.bin").write_bytes(GOOD[:5])
        os._exit(1)  # a filler that crashes: no cleanup of its own runs

    shared_folder(Path(root), "cnn-1", _is_good, fill)


def test_two_processes_fill_the_folder_once(tmp_path):
    root, log = tmp_path / "cache", tmp_path / "fills.log"
    found = run_together(_fetch_in_a_process, (str(root), str(log)), 2, timeout=60)
    assert found == [(str(root / "cnn-1"), True)] * 2
    assert len(log.read_text().splitlines()) == 1  # one fill; the other process waited and used it
    assert sorted(p.name for p in root.iterdir()) == ["cnn-1", "cnn-1.lock"]  # no staging folder left
    assert (root.stat().st_mode & 0o777, (root / "cnn-1").stat().st_mode & 0o777) == (0o700, 0o700)


def test_a_copy_that_is_not_intact_is_filled_again(tmp_path):
    root, log = tmp_path / "cache", tmp_path / "fills.log"
    folder = shared_folder(root, "cnn-1", _is_good, _fill_slowly(log))
    assert shared_folder(root, "cnn-1", _is_good, _fill_slowly(log)) == folder
    assert len(log.read_text().splitlines()) == 1
    (folder / "model.bin").write_bytes(b"changed on disk")
    assert shared_folder(root, "cnn-1", _is_good, _fill_slowly(log)) == folder
    assert _is_good(folder) and len(log.read_text().splitlines()) == 2
    assert sorted(p.name for p in root.iterdir()) == ["cnn-1", "cnn-1.lock"]


def test_a_refused_fill_puts_nothing_in_place(tmp_path):
    root = tmp_path / "cache"

    def refuse(folder: Path) -> None:
        (folder / "model.bin").write_bytes(b"not what was exported")
        raise ValueError("does not match the digest")

    with pytest.raises(ValueError, match="does not match the digest"):
        shared_folder(root, "cnn-1", _is_good, refuse)
    assert sorted(p.name for p in root.iterdir()) == ["cnn-1.lock"]
    assert _is_good(shared_folder(root, "cnn-1", _is_good, _fill_slowly(tmp_path / "fills.log")))


def test_a_filler_that_died_leaves_no_folder_and_its_leftovers_are_removed(tmp_path):
    root = tmp_path / "cache"
    crashing = multiprocessing.get_context("spawn").Process(target=_die_while_filling, args=(str(root),))
    crashing.start()
    crashing.join(timeout=60)
    assert crashing.exitcode == 1
    assert not (root / "cnn-1").exists()
    assert [p.name for p in root.glob(".cnn-1.tmp-*")]  # what the crash left, beside the folder
    folder = shared_folder(root, "cnn-1", _is_good, _fill_slowly(tmp_path / "fills.log"))  # the lock was released
    assert _is_good(folder) and sorted(p.name for p in root.iterdir()) == ["cnn-1", "cnn-1.lock"]


def test_a_link_in_the_folders_place_is_replaced_not_followed(tmp_path):
    root, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.bin").write_bytes(GOOD)  # intact content, but a folder anyone could change later
    root.mkdir(mode=0o700)
    (root / "cnn-1").symlink_to(elsewhere)
    folder = shared_folder(root, "cnn-1", _is_good, _fill_slowly(tmp_path / "fills.log"))
    assert not folder.is_symlink() and _is_good(folder)
    assert (elsewhere / "model.bin").read_bytes() == GOOD  # what the link pointed at is left alone


def test_a_model_in_a_local_folder_is_still_fetched_per_process(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIAJOBS_CACHE", str(tmp_path / "cache"))
    fetch_model.cache_clear()
    version = tmp_path / "cnn" / "model" / "versions" / "v-1"
    version.mkdir(parents=True)
    (version / "model.keras").write_bytes(GOOD)
    (version / "metadata.json").write_text(json.dumps({
        "model_id": "v-1", "files": ["model.keras"], "digests": {"model.keras": hashlib.sha256(GOOD).hexdigest()}}))
    (tmp_path / "cnn" / "model" / "LATEST").write_text(json.dumps({"model_id": "v-1"}))
    local = fetch_model(str(tmp_path / "cnn"), "v-1")
    assert local.name == str(os.getpid()) and (local / "model.keras").read_bytes() == GOOD
    fetch_model.cache_clear()
