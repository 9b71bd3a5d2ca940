"""Job specs: the strict YAML files that describe one train, score, generate or stylize job.

`load_spec` reads a file, applies `key.path=value` overrides and validates once; every
problem becomes one line of a `SpecError` that names the file, the field path and the fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from jobs.errors import SpecError
from jobs.spec.errors import USERINFO, Loc, Problem, describe_error, show, spec_error, starts_with, unknown_choice
from jobs.spec.fields import SECRET_KEY_PROBLEM, SECRET_URI_PROBLEM, task_definition
from jobs.spec.kinds import MODEL_DESCRIPTION, GenerateSpec, RoutedScoreSpec, ScoreSpec, StylizeSpec, TrainSpec
from jobs.spec.sections import ImageModelConfig, ModelConfig, ScoreResources, TrainData, TrainingConfig, TrainResources
from jobs.spec.yaml_file import SECRET_KEY, apply_overrides, plain_copy, read_yaml

__all__ = [
    "GenerateSpec", "ImageModelConfig", "ModelConfig", "ScoreResources", "ScoreSpec", "Spec",
    "StylizeSpec", "TrainData", "TrainResources", "TrainSpec", "TrainingConfig", "load_spec", "load_spec_of",
    "parse_spec", "spec_hash", "spec_to_dict",
]


Spec = TrainSpec | ScoreSpec | RoutedScoreSpec | GenerateSpec | StylizeSpec
_KINDS: dict[str, type[Spec]] = {"generate": GenerateSpec, "score": ScoreSpec, "stylize": StylizeSpec,
                                 "train": TrainSpec}


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Read a YAML job spec, apply overrides and validate it.

    Args:
        path: the spec file; its name as given prefixes every error line.
        overrides: `key.path=value` strings; the value is parsed as YAML (`training.epochs=3`,
            `resources={num_workers: 1}`) and missing intermediate mappings are created.

    Returns:
        A `TrainSpec`, `ScoreSpec`, `GenerateSpec` or `StylizeSpec`, by the spec's `kind`.

    Raises:
        SpecError: naming the file, the field path, what is wrong and the fix; one line per problem.
    """
    source = str(path)
    data = read_yaml(Path(path), source)
    if data is None:
        raise SpecError(f'{source}: the file is empty; start it with "version: 1" and a job kind '
                        f'("kind: train", "kind: score", "kind: generate" or "kind: stylize")')
    return parse_spec(data, source, overrides)


SpecT = TypeVar("SpecT", TrainSpec, ScoreSpec, RoutedScoreSpec, GenerateSpec, StylizeSpec)


def load_spec_of(kind: type[SpecT], path: str | Path, overrides: Sequence[str] = ()) -> SpecT:
    """`load_spec` for a caller that needs one kind of spec (a bench, a test, a tool).

    Raises:
        SpecError: as `load_spec`, or the file holds another kind of job.
    """
    spec = load_spec(path, overrides)
    if not isinstance(spec, kind):
        raise SpecError(f"{path}: kind: this is a {spec.kind} job; a {kind.__name__} was expected here")
    return spec


def parse_spec(data: Mapping, source: str = "<spec>", overrides: Sequence[str] = ()) -> Spec:
    """Validate an already-parsed spec (never mutated); see `load_spec`.

    Raises:
        SpecError: as `load_spec`.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f'{source}: the top level must be a mapping of fields such as "version: 1" '
                        f'and "kind: train" (got {show(data)})')
    plain, overridden = apply_overrides(plain_copy(data), overrides, source)
    problems = _credential_problems(plain, ())
    kind = plain.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:  # `kind: []` is unhashable
        problems.append((("kind",), _kind_problem(kind, "kind" in plain)))
        raise spec_error(source, problems, overridden)
    model: type[Spec] = RoutedScoreSpec if kind == "score" and "routes" in plain else _KINDS[kind]
    try:
        spec = model.model_validate(plain)
    except ValidationError as exc:
        # A credential problem already covers its subtree; pydantic's view of it would echo it.
        hidden = [loc for loc, _ in problems]
        for err in exc.errors(include_url=False):
            # A non-string key is a problem of the mapping that holds it, not a path of its own.
            loc = err["loc"][:-1] if err["type"] == "invalid_key" else err["loc"]
            if not any(starts_with(loc, prefix) for prefix in hidden):
                problems.append((loc, _for_the_task(describe_error(model, err, _KINDS), err, plain)))
    if problems:
        raise spec_error(source, problems, overridden)
    return spec


def _for_the_task(message: str, err: Mapping[str, Any], plain: Mapping[str, Any]) -> str:
    """A missing train `model` is hinted with the spec's own task's default architecture (the
    field's description names the image classifier's)."""
    known = task_definition(plain.get("task")) if isinstance(plain.get("task"), str) else None
    if err["type"] == "missing" and tuple(err["loc"]) == ("model",) and plain.get("kind") == "train" and known:
        example = MODEL_DESCRIPTION.format(architecture=known.default_architecture.name)
        return f"required field is missing ({example})"
    return message


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The spec as plain JSON-compatible data, defaults included; `parse_spec` reads it back.

    An unset `training.batch_size` stays unset: the train job lowers an unset one to fit
    the data and takes a set one as given, and a submitted spec must mean the same."""
    data = spec.model_dump(mode="json")
    training = getattr(spec, "training", None)
    if training is not None and not training.batch_size_is_set:
        del data["training"]["batch_size"]
    return data


def spec_hash(spec: Spec) -> str:
    """12 hex characters of the sha256 of the canonical JSON of the spec (defaults included)."""
    canonical = json.dumps(spec_to_dict(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _credential_problems(value: Any, loc: Loc) -> list[Problem]:
    if isinstance(value, dict):
        problems: list[Problem] = []
        for key, item in value.items():
            if isinstance(key, str) and SECRET_KEY.search(key):
                problems.append((loc + (key,), SECRET_KEY_PROBLEM))
            else:
                problems += _credential_problems(item, loc + (key,))
        return problems
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _credential_problems(item, loc + (i,))]
    if isinstance(value, str) and USERINFO.search(value):
        return [(loc, SECRET_URI_PROBLEM)]
    return []


def _kind_problem(kind: Any, present: bool) -> str:
    valid = sorted(_KINDS)
    if not present:
        return f"required field is missing (the job kind: {', '.join(valid)}); add e.g. \"kind: train\""
    if not isinstance(kind, str):
        return f"must be one of {', '.join(valid)} (got {show(kind)})"
    return unknown_choice("kind", kind, valid)
