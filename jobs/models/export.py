"""Publishing a model version: `model/versions/<model_id>/` written completely, then `LATEST`
moved to it with a conditional write (see `jobs.models.store` for the layout).

Readers resolve `LATEST` once and then read only the version folder, and a version folder
is complete before any reader is pointed at it, so a scoring run that starts during a
re-export loads either the old model or the new one, never a mix. The conditional write
keeps two exports from overwriting each other unseen: the one that loses is told, and its
version stays complete and can be pinned.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs.errors import JobFailedError
from jobs.models.metadata import ModelMetadata
from jobs.models.store import (
    LATEST_FILE,
    METADATA_FILE,
    MODEL_DIR,
    VERSIONS_DIR,
    ModelVersion,
    check_file_names,
    resolve_model,
)
from jobs.storage.checks import ensure_bucket
from jobs.storage.objects import exists, parse_uri, read_bytes, upload_file, write_bytes
from jobs.storage.pointer import PointerMovedError, read_pointer, write_pointer


def file_digests(source: Path, entries: list[str]) -> dict[str, str]:
    """sha256 of every file of the exported entries (a file, or a folder such as a SavedModel),
    keyed by its name relative to `source`."""
    digests = {}
    for entry in entries:
        path = source / entry
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            digest = hashlib.sha256()
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            digests[file.relative_to(source).as_posix()] = digest.hexdigest()
    return digests


def export_model(source: Path, metadata: ModelMetadata | Mapping[str, Any], output_uri: str,
                 extra: dict[str, bytes] | None = None) -> ModelVersion:
    """Write the files `metadata.files` names (from `source`) as version `metadata.model_id`
    under `output_uri`'s `model/`, with `metadata.json` (plus their digests) last, then move
    `LATEST` to it. `extra`: further small files of the version (a training curve). This is
    the one writer of a model's metadata (a mapping is read as `ModelMetadata` first).

    Raises:
        JobFailedError: another export moved `LATEST` while this one was writing.
    """
    model_dir = parse_uri(output_uri).as_prefix().join(MODEL_DIR).as_prefix()  # a train job's output/model/
    if not isinstance(metadata, ModelMetadata):
        metadata = ModelMetadata.from_document(dict(metadata), f"the metadata of {source}")
    model_id = metadata.model_id
    metadata = metadata.model_copy(update={"digests": file_digests(source, metadata.files)})
    digests = metadata.digests or {}
    check_file_names(metadata.model_dump(exclude_unset=True), str(source) + "/")
    folder = model_dir.join(VERSIONS_DIR, model_id).as_prefix()
    latest_uri = model_dir.join(LATEST_FILE).uri
    ensure_bucket(model_dir.uri)
    before = read_pointer(latest_uri)
    if not _already_exported(folder, digests):
        for name in sorted(digests):
            upload_file(source / name, folder.join(name).uri)
        for name, data in (extra or {}).items():
            write_bytes(folder.join(name).uri, data)
        write_bytes(folder.join(METADATA_FILE).uri, metadata.to_json())
    pointer = json.dumps({"model_id": model_id, "moved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "previous": json.loads(before[0]).get("model_id") if before else None,
                          "nonce": hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:16]}).encode()
    try:
        write_pointer(latest_uri, pointer, before[1] if before else None)
    except PointerMovedError:
        moved = read_pointer(latest_uri)
        other = json.loads(moved[0]).get("model_id") if moved else None
        raise JobFailedError(f"another export moved {latest_uri} to model {other} while this one was writing "
                             f"{model_id}; {model_id} is complete at {folder.uri}: pin it with "
                             f"model: {model_dir.uri}@{model_id}, or re-run the export to make it the latest") from None
    return resolve_model(f"{model_dir.uri}@{model_id}")


def _already_exported(folder, digests: dict[str, str]) -> bool:
    """The same files are already complete there (an export re-run after its pointer move failed)."""
    uri = folder.join(METADATA_FILE).uri
    return exists(uri) and json.loads(read_bytes(uri)).get("digests") == digests
