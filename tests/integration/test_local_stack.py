"""The embedded local stack: idempotent `up`, private credentials, S3 that demands keys, a Ray
head that takes authenticated drivers, and a `down` that stops only its own processes."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from cluster import _host, _ray_head, _seaweed
from cluster import local_stack as stack_api
from cluster.localstate import LOOPBACK_ENV, credentials_file, mediajobs_home, ray_auth_token_file, read_local_stack
from jobs.errors import StackError

# A Ray driver run as its own process, the way users and `mediajobs` run drivers.
DRIVER = """
import json, os, ray
from ray.job_submission import JobSubmissionClient

ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)

@ray.remote
def task_environment():
    return {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "TF_USE_LEGACY_KERAS")}

seen = ray.get(task_environment.remote())
jobs = JobSubmissionClient().list_jobs()  # address from RAY_API_SERVER_ADDRESS
print(json.dumps({"task_env": seen, "listed_jobs": isinstance(jobs, list)}))
"""


def _s3(endpoint: str, access_key: str | None = None, secret_key: str | None = None, attempts: int = 1):
    config = Config(retries={"max_attempts": attempts, "mode": "standard"}, s3={"addressing_style": "path"})
    if access_key is None:
        config = config.merge(Config(signature_version=UNSIGNED))
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, config=config)


def _running_pids() -> dict[str, int | None]:
    return {c.name: c.pid for c in stack_api.status().components}


def _env_without_ray_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}


# --- unit tests: no servers ------------------------------------------------------------


# --- integration tests: the real stack --------------------------------------------------

@pytest.mark.integration
def test_up_again_keeps_running_processes_and_endpoints(local_stack):
    before = _running_pids()
    started = time.monotonic()
    again = stack_api.up()
    assert time.monotonic() - started < 10
    assert again == local_stack
    assert _running_pids() == before
    assert all(before.values())


@pytest.mark.integration
def test_state_files_are_private(local_stack):
    home = mediajobs_home()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in (credentials_file(home), ray_auth_token_file(home), home / "seaweed-s3.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    state = (home / "stack.json").read_text()
    assert local_stack.secret_key not in state
    assert local_stack.secret_key not in repr(local_stack) + repr(stack_api.status())


@pytest.mark.integration
def test_s3_refuses_anonymous_and_wrong_secret_and_serves_the_key_pair(local_stack):
    with pytest.raises(ClientError) as anonymous:
        _s3(local_stack.s3_endpoint).list_buckets()
    assert anonymous.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        _s3(local_stack.s3_endpoint, local_stack.access_key, "not-the-secret").list_buckets()

    # Retries as jobs.storage.objects has them: SeaweedFS may answer a new bucket's first write with a
    # transient InternalError while it grows the bucket's first volume (seen in CI).
    client = _s3(local_stack.s3_endpoint, local_stack.access_key, local_stack.secret_key, attempts=5)
    client.create_bucket(Bucket="stack-test")
    client.put_object(Bucket="stack-test", Key="dir/hello.txt", Body=b"hello stack")
    assert client.get_object(Bucket="stack-test", Key="dir/hello.txt")["Body"].read() == b"hello stack"


@pytest.mark.integration
def test_many_buckets_each_take_writes(local_stack):
    # Each bucket is a SeaweedFS collection; with the default growth (7 volumes per
    # collection) the store ran out of volume slots after about ten buckets.
    client = _s3(local_stack.s3_endpoint, local_stack.access_key, local_stack.secret_key, attempts=5)
    for i in range(16):
        client.create_bucket(Bucket=f"many-buckets-{i:02d}")
        client.put_object(Bucket=f"many-buckets-{i:02d}", Key="x", Body=b"x")
    master = json.loads((mediajobs_home() / "stack.json").read_text())["ports"]["seaweedfs"]["master"]
    with urllib.request.urlopen(f"http://127.0.0.1:{master}/dir/status", timeout=10) as answer:
        assert json.load(answer)["Topology"]["Free"] > 100  # room for hundreds more buckets
    for i in range(16):
        client.delete_object(Bucket=f"many-buckets-{i:02d}", Key="x")
        client.delete_bucket(Bucket=f"many-buckets-{i:02d}")


@pytest.mark.integration
def test_ray_driver_with_client_env_runs_tasks_that_see_the_store(local_stack):
    env = {**_env_without_ray_settings(), **stack_api.ray_client_env(local_stack)}
    result = subprocess.run([sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["task_env"] == {"AWS_ENDPOINT_URL": local_stack.s3_endpoint,
                                  "AWS_ACCESS_KEY_ID": local_stack.access_key, "TF_USE_LEGACY_KERAS": "1"}
    assert report["listed_jobs"] is True


@pytest.mark.integration
def test_ray_driver_without_the_token_is_refused(local_stack, tmp_path):
    env = {**_env_without_ray_settings(), "RAY_ADDRESS": local_stack.ray_address, "HOME": str(tmp_path),
           **LOOPBACK_ENV,  # everything a client needs but the token
           "RAY_gcs_server_port_wait_time_s": "2"}  # give up after 2 connection attempts, not 20
    result = subprocess.run([sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Authentication token is missing or incorrect" in result.stderr


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


@pytest.mark.integration
def test_every_listener_of_the_stack_is_on_loopback(local_stack, ray_driver):
    import psutil
    import ray

    # Workers and a Ray Data job's actors are the head's children: have some running.
    assert ray.get([ray.remote(lambda: os.getpid()).remote() for _ in range(4)])
    state = json.loads((mediajobs_home() / "stack.json").read_text())
    roots = [psutil.Process(record["pid"]) for record in state["processes"].values()]
    listeners = []
    for proc in roots + [child for root in roots for child in root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            listeners += [(proc.name(), c.laddr.ip, c.laddr.port) for c in proc.net_connections("tcp")
                          if c.status == psutil.CONN_LISTEN]
    names = {name for name, _, _ in listeners}
    assert {"weed", "gcs_server", "raylet"} <= names, names  # the probe sees the servers at all
    assert [entry for entry in listeners if not _is_loopback(entry[1])] == []


@pytest.mark.integration
def test_status_reports_both_components_healthy(local_stack):
    status = stack_api.status()
    assert status.healthy
    assert {c.name: c.endpoint for c in status.components} == {
        "seaweedfs": local_stack.s3_endpoint, "ray-head": local_stack.ray_address}
    assert status.dashboard_url == local_stack.dashboard_url
    assert status.state_dir == mediajobs_home().resolve()


@pytest.mark.integration
def test_env_lines_are_shell_exports_of_the_stack(local_stack):
    lines = stack_api.env_lines()
    assert all(line.startswith("export ") for line in lines)
    script = "\n".join(lines) + "\nenv -0\n"
    shell = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"]}, capture_output=True,
                           check=True, timeout=30)
    exported = dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    assert exported["AWS_ENDPOINT_URL"] == local_stack.s3_endpoint
    assert exported["AWS_ACCESS_KEY_ID"] == local_stack.access_key
    assert exported["AWS_SECRET_ACCESS_KEY"] == local_stack.secret_key
    assert exported["RAY_ADDRESS"] == local_stack.ray_address
    assert exported["RAY_AUTH_MODE"] == "token"
    assert Path(exported["RAY_AUTH_TOKEN_PATH"]) == ray_auth_token_file(mediajobs_home().resolve())
    assert exported["RAY_USAGE_STATS_ENABLED"] == "0"  # as the head, started with --disable-usage-stats


@pytest.mark.integration
def test_ray_data_runs_on_the_stack_collect_no_usage_stats(local_stack, ray_driver):
    """Ray Data collects usage stats unless the driver says not to: an actor per cluster and
    a thread polling a Prometheus that the stack does not run."""
    import ray.data
    from ray.util.state import list_actors

    assert ray.data.range(8).map_batches(lambda batch: batch).count() == 8
    classes = {actor.class_name for actor in list_actors(address=local_stack.dashboard_url, limit=1000)}
    assert "_StatsActor" in classes  # Ray Data did run on the stack, and its actors are listed
    assert not any("UsageCollection" in name for name in classes), classes


@pytest.mark.integration
def test_second_stack_runs_beside_and_down_stops_only_its_own(local_stack, tmp_path):
    home = tmp_path / "second-home"
    try:
        second = stack_api.up(home)
        assert {second.s3_endpoint, second.ray_address, second.dashboard_url}.isdisjoint(
            {local_stack.s3_endpoint, local_stack.ray_address, local_stack.dashboard_url})
        client = _s3(second.s3_endpoint, second.access_key, second.secret_key, attempts=5)
        client.create_bucket(Bucket="kept")
        client.put_object(Bucket="kept", Key="k", Body=b"survives down")
        pids = [c.pid for c in stack_api.status(home).components]
        second_ports = json.loads((home / "stack.json").read_text())["ports"]["seaweedfs"]
        assert all(path.exists() for path in _seaweed.stale_socket_files(second_ports))

        lines = stack_api.down(home)

        assert lines[:2] == [f"stopped ray-head (pid {pids[1]})", f"stopped seaweedfs (pid {pids[0]})"]
        assert not any(_host.alive(pid) for pid in pids)
        assert not _host.marked_pids(f"{stack_api.MARKER_VAR}={home.resolve()}")
        assert not _ray_head.runtime_dir(home).exists()
        assert not any(path.exists() for path in _seaweed.stale_socket_files(second_ports))
        assert stack_api.status().healthy  # the session's stack is untouched
        assert stack_api.down(home) == []

        again = stack_api.up(home)  # same ports, keys and data after a restart
        assert again == second
        client = _s3(again.s3_endpoint, again.access_key, again.secret_key, attempts=5)
        assert client.get_object(Bucket="kept", Key="k")["Body"].read() == b"survives down"
        assert read_local_stack(home.resolve()) == again
    finally:
        stack_api.down(home)


@pytest.mark.integration
def test_up_that_times_out_names_the_logs_and_leaves_nothing_running(local_stack, tmp_path):
    home = (tmp_path / "too-slow").resolve()
    with pytest.raises(StackError, match=r"did not answer its health probe within 0.5 s; see .*too-slow/logs/"):
        stack_api.up(home, timeout=0.5)
    assert not _host.marked_pids(f"{stack_api.MARKER_VAR}={home}")
    assert json.loads((home / "stack.json").read_text())["processes"] == {}
    assert stack_api.down(home) == []
