"""Faults injected for real into scoring: the S3 server stopped mid-run.

The store outage is the real SeaweedFS process of the session's stack, SIGKILLed while a
score job starts its actors or fetches, then started again by the stack's own `up`. (A
score driver SIGKILLed mid-run and re-run is tests/test_nightly.py's killed night.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from media import image_bytes

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "jobs" / "examples"
MEDIAJOBS = [sys.executable, "-m", "jobs.cli"]
IMAGES = 3000  # ~10 s of fetching on 2 cores: long enough to pull the store out from under it
BUCKET = "it-store-faults"


@pytest.fixture(scope="module")
def archive(local_stack):
    from jobs.bench.models import export_model
    from jobs.storage import s3_client

    client = s3_client()
    client.create_bucket(Bucket=BUCKET)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=BUCKET, Key=f"in/{i % 7}/img-{i:05d}.jpg",
                                                  Body=image_bytes(seed=i, size=(40, 32))), range(IMAGES)))
    export_model(f"s3://{BUCKET}/m/", "image-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]})
    return f"s3://{BUCKET}/in/"


def _score(output: str, **popen) -> subprocess.Popen:
    overrides = {"model": f"s3://{BUCKET}/m/model/", "input": f"s3://{BUCKET}/in/", "output": output}
    args = [*MEDIAJOBS, "run", str(EXAMPLES / "score-demo.yaml"),
            *(arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}"))]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def _wait_for_line(job: subprocess.Popen, needle: str, seen: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for line in job.stdout:
        seen.append(line)
        if needle in line:
            return
        assert time.monotonic() < deadline, f"no {needle!r} within {timeout} s"
    raise AssertionError(f"the job ended before {needle!r}:\n" + "".join(seen)[-3000:])


def _seaweed_pid() -> int:
    home = Path(os.environ["MEDIAJOBS_HOME"])
    return json.loads((home / "stack.json").read_text())["processes"]["seaweedfs"]["pid"]


def _store_outage(seconds: float) -> None:
    """SIGKILL the stack's S3 server, wait, and start it again with the stack's own `up`."""
    from cluster import local_stack as stack_module

    os.kill(_seaweed_pid(), signal.SIGKILL)
    time.sleep(seconds)
    stack_module.up(Path(os.environ["MEDIAJOBS_HOME"]))


def _tables(output: str) -> set[str]:
    from jobs.storage import list_objects

    return {o.uri[len(output):].split("/")[0] for o in list_objects(output)}


def _score_through_outage(output: str, outage_seconds: float, env: dict | None = None) -> tuple[int, str]:
    """Run a score job, take the store away once it is fetching; (exit code, console output)."""
    job, seen = _score(output, env=env), []
    try:
        _wait_for_line(job, "scoring", seen)
        time.sleep(8)  # listing done; actors starting up or fetching
        assert job.poll() is None, "the job finished before the outage; give it more images"
        _store_outage(outage_seconds)
        rest, _ = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    return job.returncode, "".join(seen) + rest


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_store_outage_mid_scoring_is_waited_out_and_nothing_is_lost(archive):
    from jobs.storage import read_table

    output = f"s3://{BUCKET}/out-outage/"
    code, log = _score_through_outage(output, outage_seconds=10)
    assert code == 0, log[-3000:]
    predictions = read_table(output + "predictions/").column("uri").to_pylist()
    errors = read_table(output + "errors/").to_pylist() if "errors" in _tables(output) else []
    assert errors == [], errors[:5]  # an outage is not the objects' fault: none became an error row
    assert len(predictions) == len(set(predictions)) == IMAGES


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_an_outage_longer_than_the_budget_fails_clearly_and_publishes_nothing(archive):
    output = f"s3://{BUCKET}/out-long-outage/"
    code, log = _score_through_outage(output, outage_seconds=45,
                                      env={**os.environ, "MEDIAJOBS_STORE_OUTAGE_SECONDS": "5"})
    assert code == 1, log[-3000:]
    assert "object store stopped answering" in log and "Nothing was committed" in log, log[-3000:]
    assert not _tables(output) - {"_staging"}, _tables(output)  # no predictions/, errors/ or runs/
