"""The CLI as a user runs it: exit codes, messages without tracebacks, help, validate."""

from __future__ import annotations

from support.paths import ROOT

EXAMPLES = ROOT / "jobs" / "examples"


def test_bad_spec_exits_2_naming_file_and_field_without_traceback(mediajobs_cli, tmp_path):
    spec = tmp_path / "train.yaml"
    spec.write_text((EXAMPLES / "train-demo.yaml").read_text().replace("epochs:", "epoch:"))
    result = mediajobs_cli("run", str(spec))
    assert result.returncode == 2
    assert f"{spec}: training.epoch: unknown field; did you mean 'epochs'?" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_override_and_missing_file_exit_2(mediajobs_cli, tmp_path):
    result = mediajobs_cli("run", str(EXAMPLES / "train-demo.yaml"), "--set", "training.epochs=zero")
    assert result.returncode == 2 and "training.epochs" in result.stderr
    result = mediajobs_cli("run", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "missing.yaml" in result.stderr and "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(mediajobs_cli, tmp_path):
    result = mediajobs_cli("--verbose", "run", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_usage_errors_exit_2_and_help_works(mediajobs_cli):
    assert mediajobs_cli("no-such-command").returncode == 2
    for command in ([], ["run"], ["local"], ["ingest"], ["demo"], ["validate"]):
        result = mediajobs_cli(*command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout, command


def test_validate_prints_kind_and_hash(mediajobs_cli):
    result = mediajobs_cli("validate", str(EXAMPLES / "score-demo.yaml"))
    assert result.returncode == 0 and "valid score spec 'score-demo'" in result.stdout
