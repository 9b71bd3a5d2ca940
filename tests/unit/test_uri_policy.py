"""URIs in specs are limited to the schemes the installation allows (MEDIAJOBS_URI_SCHEMES).

Issue 8: "Model and data URIs are limited to the schemes the user configured."
"""

from __future__ import annotations

import os

import pytest

from jobs.errors import SpecError
from jobs.spec.load import parse_spec
from jobs.spec.uri_policy import allowed_schemes
from support.paths import ROOT

SCORE = {"version": 1, "kind": "score", "name": "score-images", "task": "image-classifier",
         "model": "s3://models/cifar10-cnn/", "input": "s3://archive/images/", "output": "s3://scores/images/"}
STYLIZE = {"version": 1, "kind": "stylize", "name": "stylize-photos",
           "model": "https://tfhub.dev/google/magenta/arbitrary-image-stylization-v1-256/2",
           "input": "s3://photos/", "styles": ["s3://media/styles/wave.jpg"], "output": "s3://stylized/"}


def _error(data: dict) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "specs/job.yaml")
    return info.value.message


def test_unset_allows_every_scheme_and_unknown_names_only_allow_less(monkeypatch):
    monkeypatch.delenv("MEDIAJOBS_URI_SCHEMES", raising=False)
    assert allowed_schemes() == ("s3", "file", "https")
    monkeypatch.setenv("MEDIAJOBS_URI_SCHEMES", " S3 , gopher")
    assert allowed_schemes() == ("s3",)


@pytest.mark.parametrize("field, value", [
    ("model", "/tmp/models/cifar10-cnn/"), ("input", "file:///etc/"), ("output", "../scores/"),
])
def test_local_paths_are_refused_where_only_s3_is_allowed(monkeypatch, field, value):
    monkeypatch.setenv("MEDIAJOBS_URI_SCHEMES", "s3")
    message = _error({**SCORE, field: value})
    assert message == (f"specs/job.yaml: {field}: is a local path, which this installation does not allow "
                       "(MEDIAJOBS_URI_SCHEMES='s3'); use s3://bucket/prefix/")
    assert parse_spec(SCORE, "specs/job.yaml").model == SCORE["model"]  # s3 stays fine


def test_web_handles_and_s3_follow_the_setting_too(monkeypatch):
    monkeypatch.setenv("MEDIAJOBS_URI_SCHEMES", "s3,file")
    assert "model: is a web handle, which this installation does not allow" in _error(STYLIZE)
    monkeypatch.setenv("MEDIAJOBS_URI_SCHEMES", "file")
    assert "styles[0]: is an s3:// URI" in _error({**STYLIZE, "model": "/models/adain/"})
    monkeypatch.setenv("MEDIAJOBS_URI_SCHEMES", "s3,https")
    assert parse_spec(STYLIZE, "specs/job.yaml").model == STYLIZE["model"]


def test_the_cli_refuses_with_exit_2_and_starts_nothing(mediajobs_cli, tmp_path):
    env = {**os.environ, "MEDIAJOBS_URI_SCHEMES": "s3", "MEDIAJOBS_HOME": str(tmp_path)}
    result = mediajobs_cli("run", str(ROOT / "jobs/examples/score-demo.yaml"), "--set", "model=/etc/", env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "model: is a local path, which this installation does not allow" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
