"""Submission decided before anything is sent: ids, shipped code and environment, the cluster
address and token lookup. No Ray, no network."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from jobs.submission import clusters as cluster_client
from jobs.submission.clusters import ClusterError, resolve_target
from jobs.errors import UsageError
from jobs.spec.load import load_spec, parse_spec, spec_hash
from jobs.submission.submit import DRIVER_RESOURCE, driver_placement, prepare_submission, shipped_code_bytes, submission_id_for
from support.paths import EXAMPLES

NIGHT = dt.date(2026, 11, 21)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No Ray or AWS settings, an empty HOME and MEDIAJOBS_HOME (no local stack)."""
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDIAJOBS_HOME", str(tmp_path / "mediajobs-home"))
    monkeypatch.setattr(cluster_client, "DEFAULT_TOKEN_FILE", tmp_path / "home" / ".ray" / "auth_token")
    return tmp_path


def test_submission_id_is_name_date_and_hash_and_force_makes_a_new_one():
    spec = load_spec(EXAMPLES / "score-images.yaml")
    assert submission_id_for(spec, NIGHT) == f"score-images-2026-11-21-{spec_hash(spec)[:8]}"
    assert submission_id_for(spec, NIGHT) == submission_id_for(load_spec(EXAMPLES / "score-images.yaml"), NIGHT)
    changed = load_spec(EXAMPLES / "score-images.yaml", ["top_k=5"])
    assert submission_id_for(changed, NIGHT) != submission_id_for(spec, NIGHT)
    forced = {submission_id_for(spec, NIGHT, force=True) for _ in range(3)}
    assert len(forced) == 3 and all(re.fullmatch(r"score-images-2026-11-21-[0-9a-f]{8}-[0-9a-f]{6}", f)
                                    for f in forced)


def test_plan_ships_switches_and_metadata_but_never_a_secret():
    spec = load_spec(EXAMPLES / "train-cifar10.yaml")
    environ = {"AWS_ENDPOINT_URL": "http://s3.internal:8333", "AWS_DEFAULT_REGION": "eu-west-1",
               "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "very-secret-value",
               "AWS_SESSION_TOKEN": "session-secret", "RAY_AUTH_TOKEN": "ray-secret"}
    plan = prepare_submission(spec, NIGHT, environ=environ)
    assert plan.env_vars == {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                             "AWS_ENDPOINT_URL": "http://s3.internal:8333", "AWS_DEFAULT_REGION": "eu-west-1",
                             # the driver's progress as lines in the job's log, for `submit --wait` (issue 21)
                             "MEDIAJOBS_PROGRESS_LINES": "1"}
    assert plan.metadata == {"mediajobs.spec_name": "cifar10-cnn", "mediajobs.kind": "train",
                             "mediajobs.task": "image-classifier", "mediajobs.spec_hash": spec_hash(spec),
                             "mediajobs.run_date": "2026-11-21"}
    assert plan.entrypoint == "python -m jobs.cli.app run spec.yaml"
    everything = repr(plan)
    assert not any(secret in everything for secret in ("AKIAEXAMPLE", "very-secret", "session-secret", "ray-secret"))


def test_an_incremental_job_scores_as_of_its_submission_date_and_ships_its_routes():
    import yaml

    spec = load_spec(EXAMPLES / "score-nightly.yaml")
    plan = prepare_submission(spec, NIGHT, environ={})
    assert plan.entrypoint == "python -m jobs.cli.app run spec.yaml --run-date 2026-11-21"
    assert plan.metadata["mediajobs.task"] == "image-classifier,video-classifier,audio-classifier"
    assert parse_spec(yaml.safe_load(plan.spec_yaml)) == spec


def test_the_shipped_spec_is_the_validated_spec():
    import yaml

    spec = load_spec(EXAMPLES / "train-cifar10.yaml", ["training.epochs=3"])
    plan = prepare_submission(spec, NIGHT, environ={})
    assert parse_spec(yaml.safe_load(plan.spec_yaml)) == spec


def test_the_driver_asks_for_the_driver_group_where_the_cluster_has_one():
    for name in (DRIVER_RESOURCE, "mediajobsDriver"):  # as Ray names it, and as its dashboard reports it
        options, where = driver_placement({"CPU": 16.0, name: 4.0})
        assert options == {"entrypoint_resources": {DRIVER_RESOURCE: 1}, "entrypoint_num_cpus": 0}
        assert "not the head" in where
    for resources in ({"CPU": 2.0}, None):  # no group, or a cluster that does not say: the head, as Ray does
        options, where = driver_placement(resources)
        assert options == {} and where.startswith("driver: on the head node")


def test_local_paths_are_refused_naming_each_field(tmp_path):
    spec = load_spec(EXAMPLES / "train-cifar10.yaml", [f"data.train={tmp_path}/train", "output=out/"])
    with pytest.raises(UsageError) as refused:
        prepare_submission(spec, NIGHT, environ={})
    assert "data.train: " in refused.value.message and "output: 'out/' is a local path" in refused.value.message
    assert "use an s3:// URI" in refused.value.message


def test_a_submission_id_of_odd_characters_is_refused():
    with pytest.raises(UsageError, match="--submission-id"):
        prepare_submission(load_spec(EXAMPLES / "score-images.yaml"), NIGHT, submission_id="a b;rm", environ={})


def test_shipped_code_is_small_and_a_big_file_is_named(tmp_path, monkeypatch):
    total, largest = shipped_code_bytes()
    assert 0 < total < 2 * 1024**2 and all(not name.endswith(".pyc") for _, name in largest)
    for package in ("jobs", "tasks"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "tasks" / "weights.bin").write_bytes(b"\0" * 2048)
    (tmp_path / "jobs" / "__pycache__").mkdir()
    (tmp_path / "jobs" / "__pycache__" / "big.pyc").write_bytes(b"\0" * 4096)  # excluded
    monkeypatch.setattr("jobs.submission.submit.SHIP_LIMIT_BYTES", 1024)
    with pytest.raises(UsageError, match=r"over the 0 MiB limit; largest files: tasks/weights.bin"):
        shipped_code_bytes(tmp_path)
    (tmp_path / "tasks" / "weights.bin").unlink()
    assert shipped_code_bytes(tmp_path)[0] == 0


def test_address_order_explicit_then_api_server_then_ray_address(clean_env, monkeypatch):
    with pytest.raises(ClusterError, match="no Ray cluster given: pass --address"):
        resolve_target()
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.5:8265")
    assert resolve_target().address == "http://10.0.0.5:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://head:8265/")
    assert resolve_target().address == "http://head:8265"
    assert resolve_target("https://ray.example.org").address == "https://ray.example.org"
    with pytest.raises(ClusterError, match="ray:// client addresses are not supported"):
        resolve_target("ray://head:10001")


def test_token_order_env_then_path_then_home_file_and_it_is_never_shown(clean_env, monkeypatch):
    home_file = clean_env / "home" / ".ray" / "auth_token"
    home_file.parent.mkdir(parents=True)
    home_file.write_text("token-from-home\n")
    target = resolve_target("http://head:8265")
    assert (target.token, target.token_source) == ("token-from-home", str(home_file))
    path_file = clean_env / "token"
    path_file.write_text("token-from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path_file))
    assert resolve_target("http://head:8265").token == "token-from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "token-from-env")
    target = resolve_target("http://head:8265")
    assert target.headers == {"Authorization": "Bearer token-from-env"}
    assert "token-from" not in repr(target) and target.token_source == "RAY_AUTH_TOKEN"


def test_the_local_stack_head_gets_the_stack_token_not_the_home_one(clean_env):
    import json

    home = clean_env / "mediajobs-home"
    home.mkdir()
    (home / "stack.json").write_text(json.dumps({"s3_endpoint": "http://127.0.0.1:1", "ray_address": "127.0.0.1:2",
                                                 "dashboard_url": "http://127.0.0.1:3"}))
    (home / "credentials.json").write_text(json.dumps({"access_key": "a", "secret_key": "s"}))
    (home / "ray_auth_token").write_text("stack-token")
    home_file = clean_env / "home" / ".ray" / "auth_token"
    home_file.parent.mkdir(parents=True)
    home_file.write_text("home-token")
    target = resolve_target()  # no address anywhere: the local stack's head
    assert (target.address, target.token) == ("http://127.0.0.1:3", "stack-token")
    assert resolve_target("127.0.0.1:2").address == "http://127.0.0.1:3"  # its GCS address maps to it too
    assert resolve_target("http://other:8265").token == "home-token"


def test_no_token_sends_no_header(clean_env):
    target = resolve_target("http://head:8265")
    assert target.token is None and target.headers == {}
    assert "no token was found" in cluster_client.auth_hint(target)
