"""Submitting jobs through the CLI to a real 2-node, token-protected Ray cluster started with
`ray start` (a head and a second node on this machine), data in the session's S3 store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.storage.objects import list_objects, read_bytes
from support.ray_cluster import start_cluster, stop_cluster
from jobs.models.store import read_model_metadata
from support.paths import EXAMPLES

pytestmark = pytest.mark.integration
DATA = "s3://it-media/cluster-shapes/"


@pytest.fixture(scope="module")
def ray_cluster(local_stack, tmp_path_factory):
    """Two nodes of 3 logical CPUs each: a 2-CPU scoring actor fits once per node, leaving a CPU
    per node for the decode tasks, so the actor pool has to spread over both nodes. The second
    node also takes job drivers (mediajobs_driver), as a cluster/ definition's driver group does."""
    s3_env = {"AWS_ENDPOINT_URL": local_stack.s3_endpoint, "AWS_ACCESS_KEY_ID": local_stack.access_key,
              "AWS_SECRET_ACCESS_KEY": local_stack.secret_key, "AWS_DEFAULT_REGION": local_stack.region}
    cluster = start_cluster(tmp_path_factory.mktemp("ray-cluster"), s3_env,
                            [{"num_cpus": 3}, {"num_cpus": 3, "resources": {"second_node": 1, "mediajobs_driver": 2}}])
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
def shapes(local_stack, tmp_path_factory):
    from jobs.datasets.ingest import ingest_folder
    from jobs.datasets.synthetic import write_shapes_dataset

    root = tmp_path_factory.mktemp("cluster-shapes")
    write_shapes_dataset(root, per_class_train=24, per_class_test=6, seed=3)
    ingest_folder(root, DATA)
    return DATA


def _cli(cluster, *args: str, env_extra: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**cluster.client_env(dict(os.environ)), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "jobs.cli.app", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _cli_on_a_terminal(cluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`_cli` with stdout a terminal (a pseudo-terminal of `script`), as a person runs it:
    stdout holds what the terminal was sent, every frame of the live line included, without
    the escape codes (colours, cursor moves); each redraw on a line of its own."""
    import re
    import shlex

    env = {**cluster.client_env(dict(os.environ)), "TERM": "xterm", "COLUMNS": "120"}
    command = shlex.join([sys.executable, "-m", "jobs.cli.app", *args])
    ran = subprocess.run(["script", "-q", "-e", "-c", command, "/dev/null"], env=env, capture_output=True,
                         text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    ran.stdout = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", ran.stdout).replace("\r\n", "\n").replace("\r", "\n")
    return ran


def _train_args(cluster, output: str, *extra: str) -> list[str]:
    return ["submit", str(EXAMPLES / "train-demo.yaml"), "--address", cluster.dashboard_url,
            "--set", f"data.train={DATA}train/", "--set", f"data.validation={DATA}test/",
            "--set", f"output={output}", "--set", "training.batch_size=16", *extra]


def _job_id(result: subprocess.CompletedProcess) -> str:
    line = next(line for line in result.stdout.splitlines() if line.startswith("submitted "))
    return line.split()[1].rstrip(";")


def test_submit_wait_trains_on_two_nodes_and_ray_job_list_shows_it(ray_cluster, shapes):
    result = _cli(ray_cluster, *_train_args(ray_cluster, "s3://it-models/cluster-cnn/", "--wait",
                                            "--set", "training.epochs=2",
                                            "--set", "resources.placement_strategy=STRICT_SPREAD"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    job_id = _job_id(result)
    assert f"job {job_id} SUCCEEDED" in result.stdout
    assert "epoch=2" in result.stdout  # the job's log was streamed
    # Its driver printed its progress (rank 0's epochs) as lines in the job's log; off a
    # terminal, the follower leaves them out.
    assert "progress {" not in result.stdout
    metadata = read_model_metadata("s3://it-models/cluster-cnn/")
    workers = metadata["workers"]
    assert sorted(w["rank"] for w in workers) == [0, 1]
    assert len({w["node_id"] for w in workers}) == 2, workers  # one worker on each node
    assert metadata["epochs"] == 2

    # Ray's own CLI sees the same job, with the metadata we attached.
    ray_env = {**ray_cluster.client_env(dict(os.environ)), "RAY_AUTH_MODE": "token",
               "RAY_API_SERVER_ADDRESS": ray_cluster.dashboard_url}
    ray_bin = str(Path(sys.executable).parent / "ray")
    listed = subprocess.run([ray_bin, "job", "list"], env=ray_env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and job_id in listed.stdout and "mediajobs.spec_hash" in listed.stdout
    logs = subprocess.run([ray_bin, "job", "logs", job_id], env=ray_env, capture_output=True, text=True, timeout=60)
    assert logs.returncode == 0 and "epoch=2" in logs.stdout
    assert '[mediajobs] progress {"phase": "training", "done": 2, "total": 2' in logs.stdout
    ours = _cli(ray_cluster, "logs", job_id, "--address", ray_cluster.dashboard_url)
    assert ours.returncode == 0 and "epoch=2" in ours.stdout and "progress {" not in ours.stdout

    # The same spec on the same run date is not started twice.
    again = _cli(ray_cluster, *_train_args(ray_cluster, "s3://it-models/cluster-cnn/", "--wait",
                                           "--set", "training.epochs=2",
                                           "--set", "resources.placement_strategy=STRICT_SPREAD"))
    assert again.returncode == 3, again.stderr
    assert f"job {job_id} was already submitted" in again.stderr and "state SUCCEEDED" in again.stderr

    # Scoring on the same cluster: the 2-CPU actors land one per node. Followed on a terminal,
    # the job's progress shows as our live line (drawn, then cleared), its lines above it.
    scored = _cli_on_a_terminal(ray_cluster, "submit", str(EXAMPLES / "score-demo.yaml"), "--address", ray_cluster.dashboard_url,
                  "--set", "model=s3://it-models/cluster-cnn/", "--set", f"input={DATA}test/",
                  "--set", "output=s3://it-scores/cluster/", "--set", "resources={concurrency: 2, cpus_per_actor: 2}",
                  "--set", "batch_size=4", "--wait")
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
    assert "scoring" in scored.stdout and "18/18" in scored.stdout and "progress {" not in scored.stdout
    summary_uri = next(o.uri for o in list_objects("s3://it-scores/cluster/runs/") if o.uri.endswith("summary.json"))
    summary = json.loads(read_bytes(summary_uri))
    assert summary["listed"] == 18 and sum(summary["rows_per_node"].values()) == 18
    actors = _actors_of(ray_cluster, _job_id(scored), "BatchClassifier")
    assert len(actors) == 2 and len({a["node_id"] for a in actors}) == 2, actors
    # Its driver ran on the node that advertises mediajobs_driver, not on the head.
    placed = [line for line in scored.stdout.splitlines() if line.startswith("driver: ")]
    assert placed and "on a node with the mediajobs_driver resource" in placed[0], placed
    nodes = _dashboard(ray_cluster, "/api/v0/nodes?limit=100&detail=true")["data"]["result"]["result"]
    (driver_node,) = [n["node_id"] for n in nodes if "mediajobs_driver" in n["resources_total"]]
    assert _dashboard(ray_cluster, f"/api/jobs/{_job_id(scored)}")["driver_node_id"] == driver_node


def _actors_of(cluster, submission_id: str, class_fragment: str) -> list[dict]:
    """The job's actors whose class name contains `class_fragment`, from Ray's state API."""
    job = _dashboard(cluster, f"/api/jobs/{submission_id}")
    actors = _dashboard(cluster, "/api/v0/actors?limit=10000&detail=true")["data"]["result"]["result"]
    return [a for a in actors if a.get("job_id") == job["job_id"] and class_fragment in (a.get("class_name") or "")]


def _dashboard(cluster, path: str):
    """A GET of the cluster's dashboard API, with its token."""
    import urllib.request

    headers = {"Authorization": f"Bearer {cluster.token_file.read_text().strip()}"}
    with urllib.request.urlopen(urllib.request.Request(cluster.dashboard_url + path, headers=headers),
                                timeout=30) as response:
        return json.load(response)


def test_a_failing_job_is_reported_failed_and_force_starts_another(ray_cluster, shapes):
    args = ["submit", str(EXAMPLES / "score-demo.yaml"), "--address", ray_cluster.dashboard_url,
            "--set", "model=s3://it-models/does-not-exist/", "--set", "output=s3://it-scores/never/", "--wait"]
    failed = _cli(ray_cluster, *args)
    assert failed.returncode == 1, failed.stdout[-2000:] + failed.stderr[-2000:]
    job_id = _job_id(failed)
    assert f"job {job_id} ended FAILED" in failed.stderr
    status = _cli(ray_cluster, "status", job_id, "--address", ray_cluster.dashboard_url, "--json")
    view = json.loads(status.stdout)
    assert (view["state"], view["spec_name"], view["kind"]) == ("FAILED", "score-demo", "score")
    assert view["start_time"] and view["end_time"]

    forced = _cli(ray_cluster, *args, "--force")
    assert forced.returncode == 1 and _job_id(forced).startswith(job_id + "-")


def test_status_logs_stop_and_list_follow_a_running_job(ray_cluster, shapes, local_stack):
    submitted = _cli(ray_cluster, *_train_args(ray_cluster, "s3://it-models/cluster-long/", "--no-wait",
                                               "--set", "training.epochs=200", "--submission-id", "long-run-1"))
    assert submitted.returncode == 0, submitted.stderr
    assert _job_id(submitted) == "long-run-1"
    deadline = time.monotonic() + 180
    while True:
        view = json.loads(_cli(ray_cluster, "status", "long-run-1", "--address", ray_cluster.dashboard_url,
                               "--json").stdout)
        logs = _cli(ray_cluster, "logs", "long-run-1", "--address", ray_cluster.dashboard_url).stdout
        if view["state"] == "RUNNING" and "epoch=1" in logs:
            break
        assert view["state"] in ("PENDING", "RUNNING") and time.monotonic() < deadline, (view, logs[-2000:])
        time.sleep(2)
    stopped = _cli(ray_cluster, "stop", "long-run-1", "--address", ray_cluster.dashboard_url)
    assert stopped.returncode == 0 and "job long-run-1 STOPPED" in stopped.stdout, stopped.stderr
    listed = json.loads(_cli(ray_cluster, "list", "--address", ray_cluster.dashboard_url, "--json").stdout)
    row = next(j for j in listed if j["submission_id"] == "long-run-1")
    assert (row["state"], row["spec_name"], row["kind"]) == ("STOPPED", "demo-cnn", "train")
    assert row["start_time"] and row["end_time"]
    table = _cli(ray_cluster, "list", "--address", ray_cluster.dashboard_url).stdout
    assert "long-run-1" in table and "STOPPED" in table

    # Nothing secret travelled with the job or reached its log.
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(ray_cluster.dashboard_url,
                                 headers={"Authorization": f"Bearer {ray_cluster.token_file.read_text().strip()}"})
    details = client.get_job_info("long-run-1")
    shipped = json.dumps({"runtime_env": details.runtime_env, "metadata": details.metadata,
                          "entrypoint": details.entrypoint}) + client.get_job_logs("long-run-1")
    assert local_stack.secret_key not in shipped and ray_cluster.token_file.read_text().strip() not in shipped
    assert details.runtime_env["env_vars"]["TF_USE_LEGACY_KERAS"] == "1"


def test_a_missing_or_wrong_token_gets_a_clear_message(ray_cluster, tmp_path):
    wrong = _cli(ray_cluster, "list", "--address", ray_cluster.dashboard_url,
                 env_extra={"RAY_AUTH_TOKEN": "not-the-token"})
    assert wrong.returncode == 1
    assert "cluster authentication failed" in wrong.stderr and "the token from RAY_AUTH_TOKEN was refused" in wrong.stderr
    assert "not-the-token" not in wrong.stderr and "Traceback" not in wrong.stderr
    env = {k: v for k, v in ray_cluster.client_env(dict(os.environ)).items() if k != "RAY_AUTH_TOKEN_PATH"}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    missing = subprocess.run([sys.executable, "-m", "jobs.cli.app", "list", "--address", ray_cluster.dashboard_url],
                             env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no token was found" in missing.stderr and "ray get-auth-token" in missing.stderr
