"""`mediajobs schema` (the spec's JSON Schema, for editors) and shell completion (issue 21)."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest
import yaml

from support.paths import EXAMPLES


@pytest.fixture(scope="module")
def schema(mediajobs_cli) -> dict:
    done = mediajobs_cli("schema")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_example_spec_meets_the_schema_and_a_wrong_field_does_not(schema):
    validator = jsonschema.Draft202012Validator(schema)
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert len(examples) >= 10
    for path in examples:
        assert not [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))], path
    spec = yaml.safe_load((EXAMPLES / "train-demo.yaml").read_text())
    spec["training"]["epoch"] = 3  # the typo `mediajobs validate` names too
    assert list(validator.iter_errors(spec))
    assert not validator.is_valid({**yaml.safe_load((EXAMPLES / "score-demo.yaml").read_text()), "kind": "serve"})


def test_the_schema_names_each_job_kind(schema):
    kinds = {definition["properties"]["kind"].get("const") or definition["properties"]["kind"]["enum"][0]
             for definition in schema["$defs"].values() if "kind" in definition.get("properties", {})}
    assert kinds == {"train", "score", "generate", "stylize"}


def test_the_shell_completes_commands_and_subcommands(mediajobs_cli):
    def complete(words: str) -> list[str]:
        env = {**os.environ, "_MEDIAJOBS_COMPLETE": "complete_bash", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - 1)}
        done = mediajobs_cli(env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("mediajobs ru") == ["run"]
    assert complete("mediajobs tables hi") == ["history"]
    script = mediajobs_cli("--show-completion", "bash")
    assert script.returncode == 0 and "_MEDIAJOBS_COMPLETE=complete_bash" in script.stdout
