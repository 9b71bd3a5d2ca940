"""Property-based tests of spec validation through the CLI (issue 8): random and mutated YAML
exits 2 with a message naming the file and the field, never a traceback, never a started job."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.errors import SpecError
from jobs.spec.load import Spec, spec_hash
from support.spec_cli import check_cli, names_a_field, ray_connected
from support.spec_strategies import (DOCUMENTS, EXAMPLE_DATA, EXAMPLE_TEXT, FUZZ, YAML_TEXT, corrupted_examples,
                                     mutated_examples, overrides_for, write_yaml, yaml_edge_cases)


@settings(FUZZ, max_examples=200)
@given(document=DOCUMENTS)
def test_random_documents_exit_2_with_the_library_message_or_are_valid(spec_path, document):
    write_yaml(spec_path, document)
    check_cli(spec_path)


@settings(FUZZ, max_examples=200)
@given(text=st.one_of(YAML_TEXT, st.text()))
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
    write_yaml(spec_path, mutation.data)
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
    write_yaml(spec_path, mutation.data)
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
