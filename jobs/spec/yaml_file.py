"""Reading spec YAML (duplicate keys, alias cycles and runaway documents refused; floats like 1e-3
kept) and applying `--set` overrides."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from jobs.errors import SpecError
from jobs.spec.errors import USERINFO, Problem, show, spec_error

SECRET_KEY = re.compile(r"access[_-]?key|secret|passw(or)?d|token|credential|api[_-]?key|private[_-]?key", re.I)
_OVERRIDE_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_SURROGATE = re.compile("[\ud800-\udfff]")


# A spec is a few levels deep and holds tens of values; these bounds stop a file that would
# exhaust Python's recursion limit or expand, alias by alias, into billions of values.
_MAX_DEPTH = 100
_MAX_VALUES = 10_000


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, alias cycles and oversized documents, and reads
    `1e-3` as a float (as YAML 1.2 does)."""

    def compose_document(self) -> yaml.Node:
        self._depth, self._values = 0, 0
        self._anchor_sizes: dict[str, int] = {}  # values an alias of this anchor stands for
        self._open_anchors: set[str] = set()  # anchors whose value is still being read
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise _Refused(None, None, f"alias *{event.anchor} is inside the value it refers to (a cycle); "
                                           "remove it", event.start_mark)
            self._count(self._anchor_sizes.get(event.anchor, 0), event.start_mark)
            return super().compose_node(parent, index)
        if self._depth == _MAX_DEPTH:
            raise _Refused(None, None, f"more than {_MAX_DEPTH} levels of nesting; a spec needs a few",
                           event.start_mark)
        before = self._values
        self._count(1, event.start_mark)
        self._depth += 1
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(event.anchor)
        if event.anchor is not None:
            self._anchor_sizes[event.anchor] = self._values - before
        return node

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > _MAX_VALUES:
            raise _Refused(None, None, f"more than {_MAX_VALUES:,} values (an alias counts its anchor's values "
                                       "each time it is used); a spec needs far fewer", mark)

    def construct_scalar(self, node: yaml.ScalarNode) -> Any:
        value = super().construct_scalar(node)
        # "\ud800" escapes make half of a UTF-16 pair, which is not text: it cannot be hashed,
        # written to a table or printed.
        if isinstance(value, str) and _SURROGATE.search(value):
            raise yaml.constructor.ConstructorError(
                None, None, f"{show(value)} holds a lone surrogate (\\ud800-\\udfff escape), which is not a "
                            "character", node.start_mark)
        return value

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, LookupError, AttributeError, TypeError):
            # SafeConstructor lets Python's own error escape when a scalar does not fit its tag
            # (`!!int x`, `!!int` alone, `!!bool maybe`, `!!timestamp 2001-13-45`) or an integer
            # has more digits than int() reads (4300).
            tag = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {show(node.value)} as {tag}", node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if not isinstance(node, yaml.MappingNode):  # `!!map x`, `!!set x`: SafeLoader says what is wrong
            return super().construct_mapping(node, deep=deep)
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


class _Refused(yaml.composer.ComposerError):
    """Valid YAML that no spec needs; the problem text ends with the fix."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_yaml(path: Path, source: str) -> Any:
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
    except yaml.reader.ReaderError as exc:
        # Its own text ends in a second line about "<unicode string>", position N.
        line, column = text.count("\n", 0, exc.position) + 1, exc.position - text.rfind("\n", 0, exc.position)
        raise SpecError(f"{source}: line {line}, column {column}: invalid YAML: non-printable character "
                        f"#x{exc.character:04x} is not allowed; remove it") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        if isinstance(exc, _DuplicateKey):
            raise SpecError(f"{source}: {where}{exc.problem}; keep only one of them") from None
        if isinstance(exc, _Refused):
            raise SpecError(f"{source}: {where}{exc.problem}") from None
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            start = exc.context_mark
            context = f" ({exc.context} that starts at line {start.line + 1}, column {start.column + 1})"
        raise SpecError(f"{source}: {where}invalid YAML: {exc.problem}{context}; fix the syntax there") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: invalid YAML: {exc}; fix the syntax") from None


def plain_copy(value: Any) -> Any:
    """A fresh copy with plain dicts and lists, so validation never touches the caller's data."""
    if isinstance(value, Mapping):
        return {k: plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_copy(v) for v in value]
    return value


def apply_overrides(data: dict, overrides: Sequence[str], source: str) -> tuple[dict, list[tuple[str, ...]]]:
    problems: list[Problem] = []
    overridden: list[tuple[str, ...]] = []
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
                                     f"{show(node[part])}, not a mapping; set it as a whole instead"))
                break
            node = node[part]
        else:
            node[path[-1]] = value
            overridden.append(path)
    if problems:
        raise spec_error(source, problems, [])
    return data, overridden


def _show_override(text: str) -> str:
    key, sep, value = text.partition("=")
    if sep and (SECRET_KEY.search(key) or USERINFO.search(value)):
        return repr(f"{key}=***")
    return repr(text)
