"""Loading an exported model (`<train output>/model/`) on a worker, once per process."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from jobs.errors import MediaJobsError
from jobs.storage import download_file, download_prefix, exists, is_file, parse_uri
from jobs.store_outage import retry_while_unavailable
from tasks.keras_files import load_keras

MODEL_DIR = "model"
MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"


def model_location(uri: str):
    """Accept a train job's output URI or its `model/` folder."""
    loc = parse_uri(uri).as_prefix()
    if not loc.key.rstrip("/").endswith("/" + MODEL_DIR) and loc.key.rstrip("/") != MODEL_DIR:
        loc = loc.join(MODEL_DIR).as_prefix()
    return loc


def read_model_metadata(uri: str) -> dict:
    """The metadata.json of an exported model.

    Raises:
        MediaJobsError: when there is no exported model at that URI.
    """
    from jobs.storage import read_bytes

    loc = model_location(uri)
    metadata_uri = loc.join(METADATA_FILE).uri
    if not exists(metadata_uri):
        raise MediaJobsError(f"model: no exported model at {loc.uri} (expected {METADATA_FILE} and {MODEL_FILE}); "
                             "point `model` at the output URI of a finished train job")
    return json.loads(read_bytes(metadata_uri))


@lru_cache(maxsize=4)
def fetch_model(uri: str) -> Path:
    """Download the model (metadata.json and the files it lists: `model.keras` by default,
    `generator.keras` of a GAN, the `stylizer/` SavedModel of a style-transfer model) to a
    per-process local cache; returns the local dir."""
    loc = model_location(uri)
    cache = Path(os.environ.get("MEDIAJOBS_CACHE", tempfile.gettempdir())) / "mediajobs-models"
    local = cache / hashlib.sha256(loc.uri.encode()).hexdigest()[:16] / str(os.getpid())
    # Every actor fetches the model when it starts: a store that restarts meanwhile is waited out.
    retry_while_unavailable(lambda: download_file(loc.join(METADATA_FILE).uri, local / METADATA_FILE),
                            f"fetching the model {loc.uri}")
    for name in json.loads((local / METADATA_FILE).read_text()).get("files", [MODEL_FILE]):
        retry_while_unavailable(functools.partial(_download_entry, loc.join(name).uri, local / name),
                                f"fetching the model {loc.uri}")
    return local


def _download_entry(uri: str, local: Path) -> None:
    """One file of an exported model, or a directory tree (a SavedModel)."""
    if is_file(uri):
        download_file(uri, local)
    else:
        download_prefix(uri, local)


def load_keras_model(uri: str):
    """(tf-keras model, metadata) for an exported model URI."""
    local = fetch_model(uri)
    model = load_keras(local / MODEL_FILE)
    return model, json.loads((local / METADATA_FILE).read_text())
