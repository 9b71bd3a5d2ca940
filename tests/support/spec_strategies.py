"""Spec data for property-based tests: the examples and their field names, field paths, and
hypothesis strategies that make random, edge-case, corrupted and mutated specs and overrides."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from hypothesis import settings
from hypothesis import strategies as st

from support.paths import EXAMPLES

EXAMPLE_TEXT = {path.name: path.read_text() for path in sorted(EXAMPLES.glob("*.yaml"))}
EXAMPLE_DATA = {name: yaml.safe_load(text) for name, text in EXAMPLE_TEXT.items()}
KINDS = ("generate", "score", "stylize", "train")

# derandomize: every run (and CI) tries the same examples, so no example database is kept
# (database=None). deadline=None: the first CLI call imports the spec modules. The example
# counts keep tests/unit/test_spec_fuzz.py near 30 s of CPU on 2 cores.
FUZZ = settings(deadline=None, derandomize=True, database=None, max_examples=150)

FieldPath = tuple[Any, ...]  # keys and list indices into spec data


def walk(value: Any, path: FieldPath = ()) -> Iterator[tuple[FieldPath, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, path + (index,))


FIELD_NAMES = sorted({path[-1] for data in EXAMPLE_DATA.values() for path, _ in walk(data)
                      if path and isinstance(path[-1], str)})
# Scalars the examples use: random documents built from them get past the first checks.
PLAUSIBLE_SCALARS = sorted({repr(value): value for data in EXAMPLE_DATA.values() for _, value in walk(data)
                            if not isinstance(value, (dict, list))}.values(), key=repr)


def dotted_path(path: FieldPath) -> str:
    """A field path as messages write it: `routes[0].media`; a key that is not printable quoted."""
    text = ""
    for part in path:
        name = str(part) if str(part).isprintable() else repr(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text


_TEXT = st.text(max_size=30)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-10**400, max_value=10**400), st.floats(),
    _TEXT, st.dates(), st.datetimes(), st.sampled_from(PLAUSIBLE_SCALARS))
_KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12), st.integers(), st.none(), st.booleans(),
                  st.dates(), st.floats())
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
                       max_leaves=20)
# Mostly spec-shaped: a valid version and kind, fields of the real models with any values, and
# a few keys of any type.
DOCUMENTS = st.one_of(
    _VALUES,
    st.tuples(
        st.fixed_dictionaries(
            {"version": st.one_of(st.just(1), _VALUES), "kind": st.one_of(st.sampled_from(KINDS), _VALUES)},
            optional={name: st.one_of(_VALUES, st.sampled_from(PLAUSIBLE_SCALARS))
                      for name in FIELD_NAMES if name not in ("version", "kind")}),
        st.dictionaries(_KEYS, _VALUES, max_size=3),
    ).map(lambda parts: {**parts[1], **parts[0]}),
)
# The pieces YAML is made of, to be joined at random: indicators, tags, anchors, special scalars.
_YAML_PIECES = st.sampled_from([
    "\n", "  ", "\t", ": ", "- ", "? ", ",", "[", "]", "{", "}", "&a ", "*a", "&b ", "*b", "<<: ", "!!int ", "!!float ",
    "!!bool ", "!!str ", "!!null ", "!!binary ", "!!timestamp ", "!!set ", "!!omap ", "!!seq ", "!!map ", "!foo ",
    "!!python/object/apply:os.system ", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "#", "|", ">", "'",
    '"', "\\x", "\\u", ".nan", ".inf", "-.inf", "1e400", "0x1F", "0o17", "1_000", "190:20:30", "2001-12-14",
    "2001-13-45", "~", "null", "yes", "on", "version: 1\n", "kind: train\n", "name: ", "training:\n", "epochs: ",
    "\x00", "\x1b[31m", "\ufeff", "\u2028", "\ud7ff", "\U0001F600",
])
YAML_TEXT = st.lists(st.one_of(_YAML_PIECES, st.text(max_size=8)), max_size=40).map("".join)


def _yaml_text(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _set_top_level(name: str, key: str, raw: str, twice: bool) -> str:
    """An example's text with top-level `key` set to the YAML text `raw` (`twice`: key kept, so
    it is there twice when the example has it)."""
    kept = {k: v for k, v in EXAMPLE_DATA[name].items() if twice or k != key}
    return yaml.safe_dump(kept, sort_keys=False) + f"{key}: {raw}\n"


@st.composite
def yaml_edge_cases(draw: st.DrawFn) -> str:
    """An example with one field written in YAML that parsers and validators get wrong."""
    name = draw(st.sampled_from(sorted(EXAMPLE_DATA)))
    key = draw(st.sampled_from(["name", "training", "resources", "model", "batch_size", "styles", "extra"]))
    twice = draw(st.booleans())
    depth = draw(st.integers(1, 3000))
    digits = draw(st.integers(1, 12000))
    levels, width = draw(st.integers(1, 12)), draw(st.integers(1, 10))
    laughs = "".join(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * width)}]\n" for i in range(1, levels + 1))
    tagged = draw(st.sampled_from(["!!int", "!!float", "!!bool", "!!timestamp", "!!binary", "!!null", "!!seq",
                                   "!!map", "!!set", "!!omap", "!!str", "!!merge"]))
    raw = draw(st.sampled_from([
        "[" * depth + "]" * depth,                                # deep flow nesting
        "{a: " * depth + "1" + "}" * depth,
        "".join(f"\n{'  ' * (i + 1)}k{i}:" for i in range(min(depth, 400))) + " 1",  # deep block nesting
        "1" * digits, "-" + "9" * digits, "0x" + "f" * digits, "1" + "_0" * digits, "0." + "0" * digits + "1",
        f"{{epochs: {'1' * digits}}}", f"{{batch_size: 1e{digits}}}",
        ".nan", "-.inf", "{epochs: .inf, learning_rate: .nan}", "{num_workers: .NaN, concurrency: -.Inf}",
        "2001-12-14", "2001-12-14t21:59:43.10-05:00", "{seed: 2001-12-14}", "190:20:30", "0o777", "0b1010",
        f"{tagged} x", f"{tagged} 1", f"{tagged} 2001-13-45", f"{tagged} [1]", f"{tagged} {{a: 1}}",
        "&a [*a]", "&a {x: *a}", "&a {<<: *a}",                   # an alias inside its own anchor
        "\n" + laughs + f"  - *l{levels}",                         # "billion laughs": aliases of aliases
        "&s s3://media/x/\nextra_too: *s", "{<<: [&m {epochs: 1}, *m]}", "{<<: 1}", "*undefined",
        "'\\ud800'", '"\\ud800"', '"\\x1b[2J"', '"\\t\\r"', '"\\u0000"', '"\\U0001F600"', "~", "null", "",
        "{epochs: 1, epochs: 2}", "{1: a, 1.0: b}", "{~: a, null: b}", "\t1", "{a:\t1}", "\n\t- 1",
        '{"\\ud800": 1}', '{"\\x1b[31m": 1}', '{":smile:": 1}', "{[a]: 1}",
    ]))
    return _set_top_level(name, key, raw, twice)


@st.composite
def corrupted_examples(draw: st.DrawFn) -> bytes:
    """An example with a few bytes replaced: invalid UTF-8 in the middle of a real spec."""
    raw = EXAMPLE_TEXT[draw(st.sampled_from(sorted(EXAMPLE_TEXT)))].encode()
    start = draw(st.integers(0, len(raw) - 1))
    patch = draw(st.binary(min_size=1, max_size=4))
    return raw[:start] + patch + raw[start + len(patch):]


def _container(data: Any, path: FieldPath) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


_WRONG_VALUES = st.one_of(
    st.none(), st.lists(_SCALARS, max_size=3), st.dictionaries(st.text(max_size=6), _SCALARS, max_size=3),
    st.integers(max_value=0), st.integers(min_value=2**31, max_value=10**300), st.just(""), _TEXT, st.floats(),
    st.booleans(), st.dates(), st.sampled_from(PLAUSIBLE_SCALARS))
_NEW_KEYS = st.one_of(
    st.sampled_from(FIELD_NAMES), st.integers(), st.none(),
    st.sampled_from(["password", "aws_secret_access_key", "epoch", "kind", "routes"]),
    # Keys that a YAML round trip keeps (it reads "\x85" as a line break), so the path is the file's.
    st.text(min_size=1, max_size=12).filter(lambda key: yaml.safe_load(_yaml_text({key: 0})) == {key: 0}))


@dataclass(frozen=True)
class Mutation:
    example: str
    data: Any
    paths: tuple[FieldPath, ...]  # the field paths the mutation touched (old and new name of a rename)


@st.composite
def mutated_examples(draw: st.DrawFn) -> Mutation:
    """An example with one field deleted, set to a wrong value, renamed, or one unknown field added."""
    name = draw(st.sampled_from(sorted(EXAMPLE_DATA)))
    data = copy.deepcopy(EXAMPLE_DATA[name])
    fields = [path for path, _ in walk(data) if path]
    mappings = [path for path, value in walk(data) if isinstance(value, dict)]
    how = draw(st.sampled_from(["delete", "wrong value", "unknown field", "rename"]))
    if how == "unknown field":
        parent = draw(st.sampled_from(mappings))
        key = draw(_NEW_KEYS.filter(lambda k: k not in _container(data, parent + (None,))))
        _container(data, parent + (key,))[key] = draw(_VALUES)
        return Mutation(name, data, (parent + (key,),))
    path = draw(st.sampled_from(fields))
    container = _container(data, path)
    if how == "delete":
        del container[path[-1]]
        # Without routes a score spec is the single-model kind: its task and model are missing.
        also = (("task",), ("model",)) if path == ("routes",) else ()
        return Mutation(name, data, (path, *also))
    if how == "wrong value" or isinstance(container, list):
        container[path[-1]] = draw(_WRONG_VALUES)
        return Mutation(name, data, (path,))
    new_key = draw(_NEW_KEYS.filter(lambda k: k not in container))
    # Keep the order of the keys: the renamed one stays where it was.
    renamed = {(new_key if key == path[-1] else key): value for key, value in container.items()}
    container.clear()
    container.update(renamed)
    return Mutation(name, data, (path, path[:-1] + (new_key,)))


def _override_keys(data: Any) -> st.SearchStrategy[str]:
    fields = sorted({dotted_path(path) for path, _ in walk(data) if path and all(isinstance(p, str) for p in path)})
    return st.one_of(st.sampled_from(fields), st.sampled_from(FIELD_NAMES), st.text(max_size=15),
                     st.lists(st.sampled_from(FIELD_NAMES + ["x", ""]), min_size=1, max_size=4).map(".".join))


_OVERRIDE_VALUES = st.one_of(
    _VALUES.map(lambda value: yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n")
                .strip()),
    st.text(max_size=20), YAML_TEXT, st.sampled_from([str(scalar) for scalar in PLAUSIBLE_SCALARS]))


@st.composite
def overrides_for(draw: st.DrawFn, data: Any) -> list[str]:
    """Up to three `--set` values: keys of the spec, of other specs or made up; values of any YAML."""
    # Command lines cannot carry NUL characters; anything else can be typed or scripted.
    pairs = st.tuples(_override_keys(data), st.sampled_from(["=", "= ", "", "=="]), _OVERRIDE_VALUES).map("".join)
    return draw(st.lists(pairs.filter(lambda text: "\x00" not in text), max_size=3))


def write_yaml(path: Path, data: Any) -> None:
    path.write_text(_yaml_text(data), encoding="utf-8")
