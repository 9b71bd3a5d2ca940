"""Exported models: which version a URI names, and fetching it for the workers of a node once.

A train job's output holds its models under `model/`:

    model/versions/<model_id>/metadata.json   what the model is; `digests`: sha256 of each file
    model/versions/<model_id>/model.keras     (or generator.keras, stylizer/..., as `files` lists)
    model/LATEST                              {"model_id": ...}: the version `model/` means

A version is written completely before `LATEST` moves to it (`jobs.models.export`), so a
run never sees half a model; `<output>/@<model_id>` (or `<output>/model/@<model_id>`) pins
one. A run resolves its model once (`prepare_model`), and every actor loads that version
and checks it got it: two models never mix in one run's rows.

A model's files are untrusted input. Every name in `metadata.json` must stay inside the
model's folder (absolute names, `..` and links are refused before anything is downloaded),
every file must match its recorded digest, and a model whose files carry code (a Lambda
layer, a custom object, a SavedModel op that touches files) is refused unless the spec
says `trust_model_code: true`. Models exported before versions (`model/metadata.json`
beside `model/model.keras`, no digests) still load, with a warning.

A version's files are downloaded once per node and shared by its processes; every process
checks the shared copy against the digests it resolved itself before it uses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jobs.errors import MediaJobsError, StorageError
from jobs.models.metadata import MODEL_FILE, ModelMetadata, ModelRefusedError
from jobs.models.node_cache import shared_folder
from jobs.storage.checks import bucket_exists, no_bucket_message
from jobs.storage.objects import download_file, exists, is_file, list_objects, parse_uri, read_bytes
from jobs.storage.outage import retry_while_unavailable

log = logging.getLogger(__name__)

MODEL_DIR = "model"
METADATA_FILE = "metadata.json"
VERSIONS_DIR = "versions"
LATEST_FILE = "LATEST"
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class ModelVersion:
    """One exported model, resolved: `uri` names exactly this version (what actors load)."""

    uri: str  # "<...>/model/@<model_id>"; for a model from before versions, its `model/` folder
    folder: str  # where its files are, with a trailing slash
    model_id: str
    metadata: ModelMetadata
    legacy: bool = False


def split_pin(uri: str) -> tuple[str, str | None]:
    """(`uri` without its pin, the pinned model id or None): `s3://m/cnn/@cnn-1a2b` pins cnn-1a2b."""
    base, _, last = uri.rstrip("/").rpartition("/")
    if last.startswith("@") and base:
        return base + "/", last[1:]
    model, _, versions = base.rpartition("/")
    if versions == VERSIONS_DIR and model.endswith("/" + MODEL_DIR):  # a version's own folder
        return model + "/", last
    return uri, None


def model_location(uri: str):
    """The model folder `uri` names, found from what is stored, not from its name. With `X`
    the URI without its pin (a version's own folder counts as a pin), the first of these
    that is stored decides:

        1. X/versions/<pin>/metadata.json         (pinned URIs) X is a model folder
        2. X/model/versions/<pin>/metadata.json   (pinned URIs) X is a train output
        3. X/LATEST                               X is a model folder, e.g. s3://b/cnn/model/
        4. X/model/LATEST                         X is a train output, whatever its name
                                                  (an output s3://b/model/ holds s3://b/model/model/)
        5. X/metadata.json                        X is a model folder from before versions
        6. X/model/metadata.json                  X is a train output from before versions
        7. X/versions/, then X/model/versions/    versions but no LATEST (an export that stopped
                                                  before moving it): pins work, and the error
                                                  for an unpinned URI names this folder

    Where none is, the folder the name suggests (X when it is called `model`, else
    X/model/) is returned, for the error that says no model is there.
    """
    base, pin = split_pin(uri)
    loc = parse_uri(base).as_prefix()
    inner = loc.join(MODEL_DIR).as_prefix()
    markers = [f"{VERSIONS_DIR}/{pin}/{METADATA_FILE}"] if pin and MODEL_ID.fullmatch(pin) else []
    for marker in [*markers, LATEST_FILE, METADATA_FILE, VERSIONS_DIR]:
        for folder in (loc, inner):
            if exists(folder.join(marker).uri):
                return folder
    return loc if loc.key.rstrip("/").rpartition("/")[2] == MODEL_DIR else inner


def resolve_model(uri: str) -> ModelVersion:
    """The version `uri` names: its pin, else the one `LATEST` points at, else (a model from
    before versions) the metadata in `model/` itself.

    Raises:
        MediaJobsError: no exported model there, or no such version.
        StorageError: the URI's bucket does not exist.
        ModelRefusedError: its metadata names files outside its folder.
    """
    loc = model_location(uri)
    pin = split_pin(uri)[1]
    if pin is None:
        latest = _read_json(loc.join(LATEST_FILE).uri)
        if latest is None:
            metadata = _read_json(loc.join(METADATA_FILE).uri)
            if metadata is None:
                if not bucket_exists(loc.uri):
                    raise StorageError(f"model: {no_bucket_message(loc.uri)}")
                raise MediaJobsError(f"model: no exported model at {loc.uri} (expected {LATEST_FILE} and "
                                     f"{VERSIONS_DIR}/, or {METADATA_FILE} and {MODEL_FILE}); point `model` at the "
                                     "output URI of a finished train job")
            check_file_names(metadata, loc.uri)
            legacy = ModelMetadata.from_document(metadata, loc.join(METADATA_FILE).uri)
            return ModelVersion(loc.uri, loc.uri, str(metadata.get("model_id", "")), legacy, legacy=True)
        pin = str(latest.get("model_id", ""))
    if not MODEL_ID.fullmatch(pin):
        raise ModelRefusedError(f"model: {pin!r} is not a model id (letters, digits, '.', '_', '-'); "
                                f"pin a version as {loc.uri}@<model_id>")
    folder = loc.join(VERSIONS_DIR, pin).as_prefix()
    metadata = _read_json(folder.join(METADATA_FILE).uri)
    if metadata is None:
        if not bucket_exists(loc.uri):
            raise StorageError(f"model: {no_bucket_message(loc.uri)}")
        known = sorted({o.uri[len(loc.join(VERSIONS_DIR).as_prefix().uri):].split("/", 1)[0]
                        for o in list_objects(loc.join(VERSIONS_DIR).uri)})
        raise MediaJobsError(f"model: no version {pin} at {folder.uri} (versions there: "
                             f"{', '.join(known) or 'none'}); pin one of them, or point `model` at the output URI")
    if metadata.get("model_id") != pin:
        raise ModelRefusedError(f"model: {folder.join(METADATA_FILE).uri} says it is model "
                                f"{metadata.get('model_id')!r}, not {pin!r}; the version folder was changed after "
                                "export. Re-export the model with mediajobs train")
    check_file_names(metadata, folder.uri)
    typed = ModelMetadata.from_document(metadata, folder.join(METADATA_FILE).uri)
    return ModelVersion(f"{loc.uri}@{pin}", folder.uri, pin, typed)


def read_model_metadata(uri: str) -> ModelMetadata:
    """The metadata of the model version `uri` names (see `resolve_model`)."""
    return resolve_model(uri).metadata


def prepare_model(uri: str, trust_code: bool = False) -> ModelVersion:
    """Resolve the run's model once and check it here, before any worker starts: every file
    is fetched and checked against its digest, and Keras files for code. Workers then load
    `version.uri` with `load_keras_model(..., expected_model_id=version.model_id)`.

    Raises:
        ModelRefusedError: see `fetch_model`, or a Keras file carries code and not `trust_code`.
    """
    from tasks.keras_files import UnsafeModelFileError, code_in_archive

    version = resolve_model(uri)
    if version.legacy:
        log.warning("model %s (%s) was exported before versioned models: no digests are recorded, so its files "
                    "are not verified; re-train it to get a verified version", version.model_id, version.folder)
    local = fetch_model(version.uri, version.model_id)
    if not trust_code:
        for path in sorted(local.rglob("*.keras")):
            try:
                found = code_in_archive(path)
            except UnsafeModelFileError as exc:
                raise ModelRefusedError(f"model: {version.folder}{path.relative_to(local).as_posix()}: "
                                        f"{exc}") from None
            if found:
                raise ModelRefusedError(
                    f"model: {version.folder}{path.relative_to(local).as_posix()} would run code when loaded: "
                    f"{'; '.join(found)}. Models from a mediajobs train job have none; if you trust whoever wrote "
                    "this model, set trust_model_code: true in the spec")
    return version


def check_file_names(metadata: dict, folder: str) -> None:
    """Every file `metadata` lists (`files`, `digests`) is a plain relative name inside the folder.

    Raises:
        ModelRefusedError: an absolute name, `..`, an empty part, a backslash or a NUL.
    """
    names = list(metadata.get("files", [MODEL_FILE])) + list(metadata.get("digests", {}))
    for name in names:
        problem = _name_problem(name)
        if problem:
            raise ModelRefusedError(f"model: {folder}{METADATA_FILE} lists {name!r}, {problem}; a model's "
                                    "files must be relative names inside its folder. Re-export the model with "
                                    "mediajobs train")


def _name_problem(name) -> str | None:
    if not isinstance(name, str) or not name:
        return "which is not a file name"
    if name.startswith(("/", "~")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if "\\" in name or "\x00" in name:
        return "a name with a backslash or NUL in it"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "a path that leaves the model's folder" if ".." in name.split("/") else "a name with an empty part"
    return None


@lru_cache(maxsize=4)
def fetch_model(uri: str, expected_model_id: str | None = None) -> Path:
    """Download the model version `uri` names to a local cache; returns the local dir.

    A versioned model's files are exactly those its `digests` list, each checked after the
    download. From an object store they are downloaded once per node, into a folder that every
    process on the node shares (`jobs.models.node_cache`): each process checks that copy
    against the version it resolved itself, and downloads again a copy that does not match. A
    model from before versions has no digests (the entries of `files` are fetched), and a
    model in a local folder is at hand: both are fetched per process, as they always were.

    Raises:
        ModelRefusedError: the version is not `expected_model_id`, a name leaves the folder, a
            local model's file is a link, or a downloaded file does not match its digest.
    """
    # Every actor fetches the model when it starts: a store that restarts meanwhile is waited out.
    version = retry_while_unavailable(lambda: resolve_model(uri), f"fetching the model {uri}")
    if expected_model_id is not None and version.model_id != expected_model_id:
        raise ModelRefusedError(f"model: {uri} is now model {version.model_id!r}, not {expected_model_id!r}, which "
                                "this run resolved at its start; a run loads one model version")
    source = parse_uri(version.folder)
    cache = Path(os.environ.get("MEDIAJOBS_CACHE", tempfile.gettempdir())) / "mediajobs-models"
    folder_key = hashlib.sha256(version.folder.encode()).hexdigest()[:16]
    if version.metadata.digests is None:
        names = retry_while_unavailable(
            lambda: [n for entry in version.metadata.files for n in _entry_files(source, entry)],
            f"fetching the model {uri}")
    else:
        _check_entries_covered(version)
        names = sorted(version.metadata.digests)
    for name in [METADATA_FILE, *names]:
        _check_not_linked(source, name)
    if version.metadata.digests is None or source.scheme == "file":
        local = cache / folder_key / str(os.getpid())
        _download_model(version, names, local)
        return local
    # The folder names the version and nothing of this process: every actor on the node finds it.
    return shared_folder(cache, f"{folder_key}-{version.model_id}",
                         is_intact=lambda local: _is_this_version(local, version),
                         fill=lambda local: _download_model(version, names, local))


def _download_model(version: ModelVersion, names: list[str], local: Path) -> None:
    """Download `names` and the metadata of `version` into `local`, each file checked against
    its digest as it arrives.

    Raises:
        ModelRefusedError: a file from the store does not match its digest, or the metadata
            changed while it was being fetched.
    """
    source, digests = parse_uri(version.folder), version.metadata.digests
    for name in [METADATA_FILE, *names]:
        target = _inside(local, name)
        retry_while_unavailable(lambda name=name, target=target: download_file(source.join(name).uri, target),
                                f"fetching the model {version.folder}")
        if digests is not None and name in digests and _sha256(target) != digests[name]:
            target.unlink()
            raise ModelRefusedError(f"model: {version.folder}{name} does not match the digest recorded at export; "
                                    "the file was changed after the model was exported. Re-export the model with "
                                    "mediajobs train")
    if fetched_metadata(local).model_id != version.metadata.model_id:
        raise ModelRefusedError(f"model: {version.folder}{METADATA_FILE} changed while it was being fetched")


def _is_this_version(local: Path, version: ModelVersion) -> bool:
    """Whether a node-shared copy is `version` as this process resolved it from the store:
    its metadata is the same (the metadata file has no digest of its own) and every file
    matches the digest in that metadata. Another process, or anyone who can write the
    cache, may have made or changed the copy; this check, not who made it, is what counts."""
    digests = version.metadata.digests or {}
    try:
        if fetched_metadata(local) != version.metadata:
            return False
        return all(_sha256(_inside(local, name)) == digest for name, digest in digests.items())
    except (OSError, ValueError, MediaJobsError):  # missing, unreadable or not a model's metadata: not intact
        return False


def load_keras_model(uri: str, expected_model_id: str | None = None,
                     trust_code: bool = False) -> tuple[Any, ModelMetadata]:
    """(tf-keras model, metadata) of the model version `uri` names.

    Raises:
        ModelRefusedError: see `fetch_model`; or the Keras file carries code and not `trust_code`.
    """
    from tasks.keras_files import UnsafeModelFileError, load_keras

    local = fetch_model(uri, expected_model_id)
    try:
        model = load_keras(local / MODEL_FILE, trust_code=trust_code)
    except UnsafeModelFileError as exc:
        raise ModelRefusedError(f"model: {uri}: {exc}") from None
    return model, fetched_metadata(local)


def fetched_metadata(local: Path) -> ModelMetadata:
    """The metadata of a model fetched into `local` (`fetch_model`)."""
    path = local / METADATA_FILE
    return ModelMetadata.from_document(json.loads(path.read_text()), str(path))


def _entry_files(source, entry: str) -> list[str]:
    """The files of one `files` entry of a model from before versions: a file, or a folder's files."""
    if is_file(source.join(entry).uri):
        return [entry]
    prefix = source.join(entry).as_prefix()
    return [entry + "/" + o.uri[len(prefix.uri):] for o in list_objects(prefix.uri)]


def _check_entries_covered(version: ModelVersion) -> None:
    digests = version.metadata.digests or {}
    for entry in version.metadata.files:
        if entry not in digests and not any(name.startswith(entry + "/") for name in digests):
            raise ModelRefusedError(f"model: {version.folder}{METADATA_FILE} lists {entry!r} without a digest; "
                                    "re-export the model with mediajobs train")


def _check_not_linked(source, name: str) -> None:
    """A model in a local folder: no part of a file's path below the folder may be a link."""
    if source.scheme != "file":
        return  # object stores have no links
    path = Path(source.key)
    for part in name.split("/"):
        path = path / part
        if path.is_symlink():
            raise ModelRefusedError(f"model: {path} is a symbolic link; a model's files must be plain files "
                                    "inside its folder")


def _inside(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if root.resolve() not in target.parents:  # names were checked; this guards the cache itself
        raise ModelRefusedError(f"model: {name!r} would be written outside the model cache {root}")
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_json(uri: str) -> dict | None:
    """The JSON object at `uri`, or None where there is none."""
    if not exists(uri):
        return None
    try:
        value = json.loads(read_bytes(uri))
    except ValueError:
        raise ModelRefusedError(f"model: {uri} is not JSON; re-export the model with mediajobs train") from None
    if not isinstance(value, dict):
        raise ModelRefusedError(f"model: {uri} is not a JSON object; re-export the model with mediajobs train")
    return value
