"""The building blocks of job specs: field types, their validators and shared constants.

Every validator raises `fail(message)`: a finished sentence (what is wrong and the fix)
that `jobs.spec.errors` prefixes with the file and the field path.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from jobs.errors import StorageError
from jobs.spec.errors import USERINFO, show, unknown_choice
from jobs.spec.uri_policy import scheme_problem
from jobs.storage.objects import parse_uri
from tasks.registry import all_architectures, definition, definitions, field_choices, media_names, task_names

# What tasks are, their architectures and the sections they take come from the task
# registry (`tasks.definition`) when a spec is validated, so a task registered later is known.


def classifier_tasks() -> list[str]:
    """The tasks a score job classifies with; the others have their own job kinds."""
    return [d.name for d in definitions() if d.is_classifier]


def task_definition(name: str | None):
    """The definition of a task the spec names, or None when the name is missing or unknown
    (reported on the `task` field itself)."""
    if name is None or name not in task_names():
        return None
    return definition(name)


def tasks_taking(section: str) -> list[str]:
    """The tasks that take a spec section (frames, audio, annotate, data.style, ...)."""
    return [d.name for d in definitions() if section in d.sections]


def registry_choice(what: str, valid) -> Any:
    """A string field whose valid values are read from the task registry at validation time.

    The messages are a `Literal` field's: unknown values name the valid ones and the
    closest match; other types say what is expected.
    """
    def check(value: Any) -> Any:
        names = list(valid())
        if not isinstance(value, str):
            raise fail(f"must be one of {', '.join(names)} (got {show(value)})")
        if value not in names:
            raise fail(unknown_choice(what, value, names))
        return value

    check.registry_choice = valid  # type: ignore[attr-defined]  # the reference lists the choices
    return Annotated[str, BeforeValidator(check)]


ArchitectureName = registry_choice("architecture", all_architectures)
MediaName = registry_choice("media", media_names)
EncoderName = registry_choice("encoder", lambda: field_choices("encoder"))

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_CREDENTIALS_FIX = ("provide them through the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) "
                    "or the AWS config (~/.aws/credentials, AWS_PROFILE)")
SECRET_KEY_PROBLEM = f"credentials do not belong in a spec; remove this key and {_CREDENTIALS_FIX}"
SECRET_URI_PROBLEM = f"credentials do not belong in a URI; remove the 'user:secret@' part and {_CREDENTIALS_FIX}"


def fail(message: str) -> PydanticCustomError:
    # The "spec" error type carries a finished message; _describe_error passes it through.
    return PydanticCustomError("spec", "{message}", {"message": message})


def check_version(value: Any) -> Any:
    if value != 1 or isinstance(value, bool) or not isinstance(value, int):
        raise fail('only version 1 exists; add "version: 1"')
    return value


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        fix = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:63]
        hint = f"; try {fix!r}" if _NAME.fullmatch(fix) else ""
        raise fail("must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit "
                    f"(got {show(name)}){hint}")
    return name


def check_task(name: str) -> str:
    if name not in task_names():
        raise fail(unknown_choice("task", name, task_names()))
    return name


def check_model_source(value: str) -> str:
    # A stylization module: a TF Hub / Kaggle handle (https://...), an s3:// prefix or a local dir.
    if value.startswith(("https://", "http://")):
        if USERINFO.search(value):
            raise fail(SECRET_URI_PROBLEM)
        if problem := scheme_problem(value):
            raise fail(problem)
        return value
    return check_uri(value)


def check_uri(uri: str) -> str:
    if USERINFO.search(uri):
        raise fail(SECRET_URI_PROBLEM)
    if uri != uri.strip():
        raise fail(f"has leading or trailing spaces (got {uri!r}); remove them")
    try:
        parse_uri(uri)
    except StorageError as exc:
        reason = exc.message.split("; use ")[0]
        raise fail(f"{reason}; use s3://bucket/prefix/ or a local path") from None
    except ValueError:  # urlparse: an unclosed '[' reads as a broken IPv6 host
        raise fail(f"{show(uri)} is not a valid URI; use s3://bucket/prefix/ or a local path") from None
    if problem := scheme_problem(uri):
        raise fail(problem)
    return uri


def check_input_shape(value: Any) -> tuple[int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise fail(f"must be [height, width, channels], three integers, e.g. [32, 32, 3] (got {show(value)})")
    height, width, channels = value
    if not (8 <= height <= 1024 and 8 <= width <= 1024):
        raise fail(f"height and width must be between 8 and 1024 (got {list(value)})")
    if channels not in (1, 3):
        raise fail(f"channels must be 1 (grayscale) or 3 (RGB) (got {channels})")
    return (height, width, channels)


Version = Annotated[Literal[1], BeforeValidator(check_version)]
JobName = Annotated[str, Field(strict=True), AfterValidator(check_name)]
TaskName = Annotated[str, Field(strict=True), AfterValidator(check_task)]
Uri = Annotated[str, Field(strict=True), AfterValidator(check_uri)]
_PIN = re.compile(r"@[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_model_uri(uri: str) -> str:
    # A train job's output, optionally pinned to one exported version: s3://models/cnn/@cnn-1a2b3c.
    check_uri(uri)
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    if "@" in last and not _PIN.fullmatch(last):
        raise fail(f"pins a model version as .../@<model_id> (letters, digits, '.', '_', '-' after the @); "
                    f"got {last!r}, e.g. s3://models/cifar10-cnn/@cifar10-cnn-1a2b3c4d5e6f")
    return uri


ModelUri = Annotated[str, Field(strict=True), AfterValidator(check_model_uri)]
TRUST_DESCRIPTION = ("load a model whose files carry code (Lambda layers, custom objects, SavedModel ops that "
                      "touch files); only for models whose author you trust")
InputShape = Annotated[tuple[int, int, int], BeforeValidator(check_input_shape)]
Count = Annotated[int, Field(strict=True, ge=1)]
BatchSize = Annotated[int, Field(strict=True, ge=1, le=65536)]
Flag = Annotated[bool, Field(strict=True)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
