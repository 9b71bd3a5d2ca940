"""Where a stylize job's module comes from, checked before any worker loads it: a TF Hub
handle, a SavedModel directory (local or s3://), or a style-transfer model version."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import MediaJobsError
from jobs.storage.objects import is_file, parse_uri

SAVED_MODEL_FILE = "saved_model.pb"


@dataclass(frozen=True)
class StylizerSource:
    """Where the module comes from: `kind` is "handle" (TF Hub/Kaggle URL), "s3" or "local" (a
    SavedModel directory), or "trained" (a style-transfer model version; `module_dir` is its
    SavedModel folder)."""

    kind: str
    location: str
    model_id: str
    module_dir: str = ""


def resolve_stylizer(model: str, task: str | None = None) -> StylizerSource:
    """The stylization module a spec's `model` names; a trained one must be of `task` (default:
    the task whose models stylize jobs apply).

    Raises:
        MediaJobsError: nothing loadable there, or a model of another task.
    """
    from jobs.models.store import ModelRefusedError, resolve_model, split_pin

    if model.startswith(("https://", "http://")):
        return StylizerSource("handle", model, model)
    loc = parse_uri(model).as_prefix()
    kind = "s3" if loc.scheme == "s3" else "local"
    if is_file(loc.join(SAVED_MODEL_FILE).uri):
        return StylizerSource(kind, loc.uri, loc.uri)
    try:
        version = resolve_model(model)
    except ModelRefusedError:
        raise
    except MediaJobsError:
        if split_pin(model)[1]:
            raise  # no such version: that message names the versions there
        raise MediaJobsError(f"model: no stylization module at {loc.uri} (expected {SAVED_MODEL_FILE}, or the "
                             "output of a style-transfer train job); use a SavedModel directory, its s3:// copy, or "
                             "a TF Hub handle such as https://tfhub.dev/google/magenta/arbitrary-image-stylization-"
                             "v1-256/2") from None
    if task is None:
        from tasks.registry import definitions

        task = next(d.name for d in definitions() if d.job_kind == "stylize")
    if version.metadata.task != task:
        raise MediaJobsError(f"model: the model at {version.folder} was trained for task "
                             f"{version.metadata.task!r}; a stylize job needs a style-transfer model or a TF "
                             "Hub stylization module")
    return StylizerSource("trained", version.uri, version.model_id, getattr(version.metadata, "stylizer", "stylizer"))


def check_stylizer(source: StylizerSource, trust_code: bool) -> None:
    """Before any worker starts: the module loads (a handle: the hub answers), a trained one
    matches its digests, and unless `trust_code` its graph only computes.

    Raises:
        MediaJobsError: the hub cannot be reached or the module cannot be loaded.
        ModelRefusedError: see `jobs.models.store.prepare_model`, or the graph touches files or Python.
    """
    from jobs.models.store import ModelRefusedError, prepare_model
    from tasks.saved_model_ops import UnsafeSavedModelError, check_saved_model
    from tasks.style_transfer import StylizerLoadError, load_stylizer

    try:
        if source.kind == "trained":
            prepare_model(source.location, trust_code)
        if source.kind == "handle":
            load_stylizer(source.location, trust_code=trust_code)  # also warms hub's cache
        elif not trust_code:
            check_saved_model(module_dir(source))
    except UnsafeSavedModelError as exc:
        raise ModelRefusedError(f"model: {exc}") from None
    except StylizerLoadError as exc:
        raise MediaJobsError(f"model: {exc.message}") from None


def module_dir(source: StylizerSource) -> str:
    """A local directory holding the module (fetched to a per-process cache), or the handle."""
    from jobs.models.store import fetch_model
    from jobs.storage.objects import download_prefix

    if source.kind == "trained":
        return str(fetch_model(source.location, source.model_id) / source.module_dir)
    if source.kind == "local":
        return parse_uri(source.location).key
    if source.kind == "handle":
        return source.location
    cache = Path(os.environ.get("MEDIAJOBS_CACHE", tempfile.gettempdir())) / "mediajobs-models"
    local = cache / hashlib.sha256(source.location.encode()).hexdigest()[:16] / f"stylizer-{os.getpid()}"
    if not (local / SAVED_MODEL_FILE).exists():
        download_prefix(source.location, local)
    return str(local)


def load_module(source: StylizerSource, trust_code: bool = False):
    """The module, loaded with `hub.load` (checked for ops that reach outside unless `trust_code`)."""
    from tasks.style_transfer import load_stylizer

    return load_stylizer(module_dir(source), trust_code=trust_code)
