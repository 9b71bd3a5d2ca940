"""Pydantic's validation errors, told in our words: the field path, what is wrong, the fix."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from jobs.errors import SpecError

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]
# `scheme://user:secret@...`: a URI carrying credentials, never echoed back.
USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s@]*@")


def unknown_choice(what: str, value: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    plural = what if what == "media" else f"{what}s"  # media is plural already
    return f"unknown {what} {value!r}{hint} valid {plural}: {', '.join(valid)}"


def describe_error(root: type[BaseModel], err: Mapping[str, Any], kinds: Mapping[str, type[BaseModel]]) -> str:
    """Pydantic's error as one sentence in our words: what is wrong, and the fix."""
    loc, error_type, value = err["loc"], err["type"], err.get("input")
    if error_type == "spec":
        return err["ctx"]["message"]
    field = _field_at(root, loc)
    if error_type == "missing":
        return f"required field is missing ({field.description})" if field and field.description else \
            "required field is missing"
    if error_type == "extra_forbidden":
        return _unknown_field(root, loc, kinds)
    if error_type == "invalid_key":
        return f"field names must be strings (got {show(loc[-1])})"
    if error_type == "string_unicode":  # only a key can get here: a lone surrogate such as "\ud800"
        return f"field names must be valid Unicode text (got {show(value)}); fix the \\u escape"
    if field is None:
        return _describe_item(root, loc, value)
    if error_type == "literal_error" and isinstance(value, str):
        return unknown_choice(str(loc[-1]), value, get_args(_unwrap(field.annotation)))
    message = f"must be {_expectation(field.annotation, field.metadata)} (got {show(value)})"
    if value is None and not field.is_required():
        message += "; delete the line to use the default"
    elif error_type == "string_type" and field.description:
        message += f"; expected {field.description}"
    return message


def _describe_item(root: type[BaseModel], loc: Loc, value: Any) -> str:
    """An item of a list field (styles[1], routes[0]): what the list's items must be."""
    holder = _field_at(root, loc[:-1]) if loc and isinstance(loc[-1], int) else None
    items = get_args(_unwrap(holder.annotation)) if holder else ()
    if len(items) != 1:
        return f"invalid value (got {show(value)})"
    return f"must be {_expectation(items[0])} (got {show(value)})"


def _unknown_field(root: type[BaseModel], loc: Loc, kinds: Mapping[str, type[BaseModel]]) -> str:
    parent = _model_at(root, loc[:-1])
    if parent is None:
        return "unknown field"
    valid = list(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    elsewhere = [kind for kind, model in kinds.items() if model is not root and loc[-1] in model.model_fields]
    where = f" (it is a field of kind {elsewhere[0]})" if len(loc) == 1 and elsewhere else ""
    return f"unknown field{where}; valid fields: {', '.join(valid)}"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int) and get_origin(model) is list:  # an item of a list of sections (routes[0])
            model = get_args(model)[0]
            continue
        field = model.model_fields.get(part) if _is_model(model) and isinstance(part, str) else None
        if field is None:
            return None
        model = _unwrap(field.annotation)
    return model if _is_model(model) else None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field_at(root: type[BaseModel], loc: Loc) -> FieldInfo | None:
    parent = _model_at(root, loc[:-1]) if loc else None
    return parent.model_fields.get(loc[-1]) if parent and isinstance(loc[-1], str) else None


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        return next(arg for arg in get_args(annotation) if arg is not type(None))
    return annotation


def _expectation(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    annotation = _unwrap(annotation)
    if get_origin(annotation) is Annotated:  # `Annotated[int, Field(ge=1)] | None`: the bounds are inside
        annotation, *extras = get_args(annotation)
        metadata = [*metadata, *(m for extra in extras for m in getattr(extra, "metadata", [extra]))]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping with fields {', '.join(annotation.model_fields)}"
    if annotation is bool:
        return "true or false"
    if get_origin(annotation) is Literal:
        return f"one of {', '.join(map(str, get_args(annotation)))}"
    if get_origin(annotation) is list:
        return "a list"
    noun = {int: "an integer", float: "a number", str: "a string"}.get(annotation, "a valid value")
    bounds = {name: getattr(m, name) for m in metadata for name in ("ge", "gt", "le", "lt") if hasattr(m, name)}
    if "ge" in bounds and "le" in bounds:
        return f"{noun} between {bounds['ge']} and {bounds['le']}"
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " ".join([noun, " and ".join(f"{words[name]} {bound}" for name, bound in bounds.items())]).strip()


def show(value: Any) -> str:
    """A short rendering of a user's value for an error message; never a credential."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if USERINFO.search(value):
            return "a URI with credentials (not shown)"
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    try:
        text = str(value)
    except ValueError:  # an int of more than 4300 digits (sys.int_info.str_digits_check_threshold)
        return "a number of more than 4300 digits"
    return text if len(text) <= 60 else text[:57] + "..."


def starts_with(loc: Loc, prefix: Loc) -> bool:
    return loc[:len(prefix)] == prefix


def _dotted(loc: Loc) -> str:
    path = ""
    for part in loc:
        # A key with control characters (or a lone surrogate) must not reach the terminal raw.
        name = str(part) if str(part).isprintable() else repr(part)
        path += f"[{part}]" if isinstance(part, int) else (f".{name}" if path else name)
    return path


def spec_error(source: str, problems: list[Problem], overridden: list[tuple[str, ...]]) -> SpecError:
    lines = []
    for loc, message in problems:
        origin = next((key for key in overridden if starts_with(loc, key) or starts_with(key, loc)), None)
        note = f" (set by override {'.'.join(origin)})" if origin and loc else ""
        lines.append(f"{source}: {_dotted(loc)}: {message}{note}" if loc else f"{source}: {message}")
    return SpecError("\n".join(lines))
