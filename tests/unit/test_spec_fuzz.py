"""Property-based tests of spec validation through the CLI (issue 8): random and mutated YAML
exits 2 with a message naming the file and the field, never a traceback, never a started job."""

from __future__ import annotations

import copy
import io
import re
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.cli.app import main
from jobs.errors import SpecError
from jobs.spec.load import Spec, load_spec, spec_hash
from support.paths import EXAMPLES

EXAMPLE_TEXT = {path.name: path.read_text() for path in sorted(EXAMPLES.glob("*.yaml"))}
EXAMPLE_DATA = {name: yaml.safe_load(text) for name, text in EXAMPLE_TEXT.items()}
KINDS = ("generate", "score", "stylize", "train")

# derandomize: every run (and CI) tries the same examples, so no example database is kept
# (database=None). deadline=None: the first CLI call imports the spec modules. The example
# counts keep the file near 30 s of CPU on 2 cores.
FUZZ = settings(deadline=None, derandomize=True, database=None, max_examples=150)

FieldPath = tuple[Any, ...]  # keys and list indices into spec data


def _walk(value: Any, path: FieldPath = ()) -> Iterator[tuple[FieldPath, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, path + (index,))


FIELD_NAMES = sorted({path[-1] for data in EXAMPLE_DATA.values() for path, _ in _walk(data)
                      if path and isinstance(path[-1], str)})
# Scalars the examples use: random documents built from them get past the first checks.
PLAUSIBLE_SCALARS = sorted({repr(value): value for data in EXAMPLE_DATA.values() for _, value in _walk(data)
                            if not isinstance(value, (dict, list))}.values(), key=repr)


# --- running the CLI in this process ------------------------------------------------------------------

@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def mediajobs(*args: str) -> CliResult:
    """`mediajobs ARGS`, run by the real entry point in this process.

    Output goes to strict UTF-8 streams, as on a terminal: text the console cannot encode
    fails here as it would for a user.
    """
    stdout, stderr = _terminal_stream(), _terminal_stream()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(list(args))
    return CliResult(code, _written(stdout), _written(stderr))


def _terminal_stream() -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", newline="\n")


def _written(stream: io.TextIOWrapper) -> str:
    stream.flush()
    return stream.buffer.getvalue().decode("utf-8")


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where each example's spec is written; module-scoped, as hypothesis reruns the test body."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FORCE_COLOR", raising=False)  # rich would add colour codes to the messages
        yield tmp_path_factory.mktemp("fuzz") / "fuzzed-spec.yaml"


def _library_outcome(path: Path, overrides: Sequence[str]) -> Spec | SpecError:
    try:
        return load_spec(path, overrides)
    except SpecError as exc:
        return exc


def check_cli(path: Path, overrides: Sequence[str] = (), command: str = "validate") -> Spec | SpecError:
    """Run `mediajobs COMMAND PATH --set ...` and check it against the library's own verdict.

    Returns:
        The validated spec, or the `SpecError` the CLI printed.
    """
    expected = _library_outcome(path, overrides)
    result = mediajobs(command, str(path), *(f"--set={override}" for override in overrides))
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    # A user's text never reaches the terminal as control characters (ESC, CR, tabs).
    assert all(char.isprintable() or char == "\n" for char in output), repr(output)
    if isinstance(expected, SpecError):
        assert result.code == 2, output
        assert result.stdout == ""
        assert result.stderr == f"invalid spec: {expected.message}\n"
        for line in expected.message.splitlines():
            assert line.startswith(f"{path}: "), expected.message
    else:
        assert result.code == 0, output
        if command == "validate":
            assert result.stdout == f"{path}: valid {expected.kind} spec {expected.name!r} (hash {spec_hash(expected)})\n"
    return expected


def _dotted(path: FieldPath) -> str:
    """A field path as messages write it: `routes[0].media`; a key that is not printable quoted."""
    text = ""
    for part in path:
        name = str(part) if str(part).isprintable() else repr(part)
        text += f"[{part}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text


def names_a_field(message: str, source: Path, paths: Sequence[FieldPath], overrides: bool = False) -> bool:
    """Whether a line of `message` is about one of `paths`: located at the path or under it, or
    (for rules across fields, "routes: ...; add incremental: true") naming the path's field.
    With `overrides`, a line about an override ("override 'x=1' is not key.path=value") counts."""
    for line in message.splitlines():
        location, _, detail = line.removeprefix(f"{source}: ").partition(": ")
        if overrides and location.startswith("override "):
            return True
        for path in paths:
            dotted = _dotted(path)
            if location == dotted or location.startswith((f"{dotted}.", f"{dotted}[")):
                return True
            # A path under an unknown key (`--set annotate.x=1` in a train spec) is that key's.
            if detail.startswith("unknown field") and any(location == _dotted(path[:i]) for i in range(1, len(path))):
                return True
            # A key that is not a string is a problem of the mapping that holds it.
            if not isinstance(path[-1], str) and "field names must be strings" in line and (
                    location == _dotted(path[:-1]) or not path[:-1]):
                return True
            leaf = next((part for part in reversed(path) if isinstance(part, str)), None)
            said = f"{location}: {detail}".split("valid fields:")[0]
            if leaf in FIELD_NAMES and re.search(rf"(?<![\w-]){re.escape(leaf)}(?![\w-])", said):
                return True
    return False


def ray_connected() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


# --- strategies ---------------------------------------------------------------------------------------

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
_DOCUMENTS = st.one_of(
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
_YAML_TEXT = st.lists(st.one_of(_YAML_PIECES, st.text(max_size=8)), max_size=40).map("".join)


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
    fields = [path for path, _ in _walk(data) if path]
    mappings = [path for path, value in _walk(data) if isinstance(value, dict)]
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
    fields = sorted({_dotted(path) for path, _ in _walk(data) if path and all(isinstance(p, str) for p in path)})
    return st.one_of(st.sampled_from(fields), st.sampled_from(FIELD_NAMES), st.text(max_size=15),
                     st.lists(st.sampled_from(FIELD_NAMES + ["x", ""]), min_size=1, max_size=4).map(".".join))


_OVERRIDE_VALUES = st.one_of(
    _VALUES.map(lambda value: yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n")
                .strip()),
    st.text(max_size=20), _YAML_TEXT, st.sampled_from([str(scalar) for scalar in PLAUSIBLE_SCALARS]))


@st.composite
def overrides_for(draw: st.DrawFn, data: Any) -> list[str]:
    """Up to three `--set` values: keys of the spec, of other specs or made up; values of any YAML."""
    # Command lines cannot carry NUL characters; anything else can be typed or scripted.
    pairs = st.tuples(_override_keys(data), st.sampled_from(["=", "= ", "", "=="]), _OVERRIDE_VALUES).map("".join)
    return draw(st.lists(pairs.filter(lambda text: "\x00" not in text), max_size=3))


def _write(path: Path, data: Any) -> None:
    path.write_text(_yaml_text(data), encoding="utf-8")


# --- properties ---------------------------------------------------------------------------------------

@settings(FUZZ, max_examples=200)
@given(document=_DOCUMENTS)
def test_random_documents_exit_2_with_the_library_message_or_are_valid(spec_path, document):
    _write(spec_path, document)
    check_cli(spec_path)


@settings(FUZZ, max_examples=200)
@given(text=st.one_of(_YAML_TEXT, st.text()))
def test_random_yaml_text_exits_2_or_is_valid(spec_path, text):
    spec_path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_cli(spec_path)


@settings(FUZZ, max_examples=100)
@given(raw=st.one_of(st.binary(), corrupted_examples()))
def test_random_bytes_exit_2_or_are_valid(spec_path, raw):
    spec_path.write_bytes(raw)
    check_cli(spec_path)


@settings(FUZZ, max_examples=200)
@given(text=yaml_edge_cases())
def test_yaml_edge_cases_exit_2_or_are_valid(spec_path, text):
    spec_path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_cli(spec_path)


@pytest.mark.parametrize("text", ["", "~\n", "null\n", "---\n", "# only a comment\n", "--- 1\n--- 2\n",
                                  "version: 1\n---\nkind: train\n", "[]\n", "{}\n", "- 1\n", "x\n"])
def test_null_scalar_and_multi_document_streams_exit_2(spec_path, text):
    spec_path.write_text(text)
    assert isinstance(check_cli(spec_path), SpecError)


@settings(FUZZ, max_examples=300)
@given(mutation=mutated_examples())
def test_mutated_examples_exit_2_naming_the_field_or_are_valid(spec_path, mutation):
    _write(spec_path, mutation.data)
    outcome = check_cli(spec_path)
    if isinstance(outcome, SpecError):
        assert names_a_field(outcome.message, spec_path, mutation.paths), (mutation.paths, outcome.message)


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_random_overrides_exit_2_naming_the_override_or_are_valid(spec_path, data):
    name = data.draw(st.sampled_from(sorted(EXAMPLE_DATA)), label="example")
    overrides = data.draw(overrides_for(EXAMPLE_DATA[name]), label="overrides")
    spec_path.write_text(EXAMPLE_TEXT[name])
    outcome = check_cli(spec_path, overrides)
    if isinstance(outcome, SpecError):
        paths = [tuple(o.partition("=")[0].strip().split(".")) for o in overrides]
        assert names_a_field(outcome.message, spec_path, paths, overrides=True), (overrides, outcome.message)


@settings(FUZZ, max_examples=50)
@given(mutation=mutated_examples(), data=st.data())
def test_run_starts_no_job_for_a_bad_spec(spec_path, mutation, data):
    overrides = data.draw(overrides_for(mutation.data), label="overrides")
    _write(spec_path, mutation.data)
    started: list[Spec] = []
    connects: list[object] = []
    connected_before = ray_connected()  # other tests of the session may have connected already
    with pytest.MonkeyPatch.context() as patch:
        # Recorders in place of the runner's entry and of its Ray connection (not fakes of
        # Ray or S3): a valid spec must reach the runner, a bad one never; no Ray is started.
        patch.setattr("jobs.runs.dispatch.run_spec", lambda spec, **kwargs: started.append(spec))
        patch.setattr("jobs.runs.dispatch.connect_ray", lambda *args, **kwargs: connects.append(args))
        outcome = check_cli(spec_path, overrides, command="run")
    assert connects == [] and ray_connected() == connected_before
    if isinstance(outcome, SpecError):
        assert started == []
    else:
        assert [spec_hash(spec) for spec in started] == [spec_hash(outcome)]
