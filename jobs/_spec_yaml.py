"""Reading spec YAML (duplicate keys refused, floats like 1e-3 kept) and applying `--set` overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from jobs._spec_errors import _USERINFO, _Loc, _Problem, _show, _spec_error
from jobs.errors import SpecError

_SECRET_KEY = re.compile(r"access[_-]?key|secret|passw(or)?d|token|credential|api[_-]?key|private[_-]?key", re.I)
_OVERRIDE_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads `1e-3` as a float (as YAML 1.2 does)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise _DuplicateKey(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _read_yaml(path: Path, source: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file; check the path (examples are in jobs/examples/)") from None
    except IsADirectoryError:
        raise SpecError(f"{source}: is a directory; pass the path of a .yaml spec file") from None
    except UnicodeDecodeError:
        raise SpecError(f"{source}: is not UTF-8 text; save the spec as UTF-8 YAML") from None
    except OSError as exc:
        raise SpecError(f"{source}: cannot read the file ({exc.strerror}); check the path and permissions") from None
    try:
        return yaml.load(text, Loader=_SpecLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        if isinstance(exc, _DuplicateKey):
            raise SpecError(f"{source}: {where}{exc.problem}; keep only one of them") from None
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            start = exc.context_mark
            context = f" ({exc.context} that starts at line {start.line + 1}, column {start.column + 1})"
        raise SpecError(f"{source}: {where}invalid YAML: {exc.problem}{context}; fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: invalid YAML: {exc}; fix the syntax") from None


def _plain(value: Any) -> Any:
    """A fresh copy with plain dicts and lists, so validation never touches the caller's data."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _apply_overrides(data: dict, overrides: Sequence[str], source: str) -> tuple[dict, list[_Loc]]:
    problems: list[_Problem] = []
    overridden: list[_Loc] = []
    for text in overrides:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not _OVERRIDE_KEY.fullmatch(key):
            problems.append(((), f"override {_show_override(text)} is not key.path=value; "
                                 "write it like training.epochs=3"))
            continue
        try:
            value = yaml.load(raw, Loader=_SpecLoader)
        except yaml.YAMLError as exc:
            reason = getattr(exc, "problem", None) or "cannot be parsed"
            problems.append(((), f"override {_show_override(text)}: the value is not valid YAML ({reason}); "
                                 "quote it or fix it"))
            continue
        path = tuple(key.split("."))
        node = data
        for depth, part in enumerate(path[:-1]):
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                problems.append(((), f"override {_show_override(text)}: {'.'.join(path[:depth + 1])} is "
                                     f"{_show(node[part])}, not a mapping; set it as a whole instead"))
                break
            node = node[part]
        else:
            node[path[-1]] = value
            overridden.append(path)
    if problems:
        raise _spec_error(source, problems, [])
    return data, overridden


def _show_override(text: str) -> str:
    key, sep, value = text.partition("=")
    if sep and (_SECRET_KEY.search(key) or _USERINFO.search(value)):
        return repr(f"{key}=***")
    return repr(text)
