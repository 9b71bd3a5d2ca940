"""`mediajobs` run by its real entry point in this process, and its verdict on a spec file checked
against the library's own (`check_cli`); whether an error message names a field (`names_a_field`)."""

from __future__ import annotations

import io
import re
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from jobs.cli.app import main
from jobs.errors import SpecError
from jobs.spec.load import Spec, load_spec, spec_hash
from support.spec_strategies import FIELD_NAMES, FieldPath, dotted_path


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


def names_a_field(message: str, source: Path, paths: Sequence[FieldPath], overrides: bool = False) -> bool:
    """Whether a line of `message` is about one of `paths`: located at the path or under it, or
    (for rules across fields, "routes: ...; add incremental: true") naming the path's field.
    With `overrides`, a line about an override ("override 'x=1' is not key.path=value") counts."""
    for line in message.splitlines():
        location, _, detail = line.removeprefix(f"{source}: ").partition(": ")
        if overrides and location.startswith("override "):
            return True
        for path in paths:
            dotted = dotted_path(path)
            if location == dotted or location.startswith((f"{dotted}.", f"{dotted}[")):
                return True
            # A path under an unknown key (`--set annotate.x=1` in a train spec) is that key's.
            if detail.startswith("unknown field") and any(location == dotted_path(path[:i])
                                                          for i in range(1, len(path))):
                return True
            # A key that is not a string is a problem of the mapping that holds it.
            if not isinstance(path[-1], str) and "field names must be strings" in line and (
                    location == dotted_path(path[:-1]) or not path[:-1]):
                return True
            leaf = next((part for part in reversed(path) if isinstance(part, str)), None)
            said = f"{location}: {detail}".split("valid fields:")[0]
            if leaf in FIELD_NAMES and re.search(rf"(?<![\w-]){re.escape(leaf)}(?![\w-])", said):
                return True
    return False


def ray_connected() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()
