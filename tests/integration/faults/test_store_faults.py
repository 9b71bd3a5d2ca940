"""Faults injected for real into scoring: the S3 server stopped mid-run.

The store outage is the real SeaweedFS process of the session's stack, SIGKILLed while a
score job (plain or nightly) starts its actors or fetches, then started again by the
stack's own `up`. (A score driver SIGKILLed mid-run and re-run is tests/integration/test_nightly.py's
killed night.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest

from support.cli import MediaJobsCli
from support.media import image_bytes
from support.paths import ROOT

EXAMPLES = ROOT / "jobs" / "examples"
MEDIAJOBS = [sys.executable, "-m", "jobs.cli.app"]
IMAGES = 3000  # ~10 s of fetching on 2 cores: long enough to pull the store out from under it
NIGHTLY_IMAGES = 300
BUCKET = "it-store-faults"


@pytest.fixture(scope="module")
def model(local_stack, export_test_model):
    from jobs.storage.objects import s3_client

    s3_client().create_bucket(Bucket=BUCKET)
    export_test_model(f"s3://{BUCKET}/m/", "image-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]})
    return f"s3://{BUCKET}/m/"


def _upload_images(prefix: str, count: int) -> None:
    from jobs.storage.objects import s3_client

    client = s3_client()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=BUCKET, Key=f"{prefix}{i % 7}/img-{i:05d}.jpg",
                                                  Body=image_bytes(seed=i, size=(40, 32))), range(count)))


@pytest.fixture(scope="module")
def archive(model):
    _upload_images("in/", IMAGES)
    return f"s3://{BUCKET}/in/"


def _score(output: str, *more: str, source: str = "in/", **popen) -> subprocess.Popen:
    """`mediajobs run score-demo.yaml` over `source` in the bucket into `output`; `more`: further arguments."""
    overrides = {"model": f"s3://{BUCKET}/m/model/", "input": f"s3://{BUCKET}/{source}", "output": output}
    args = ["run", str(EXAMPLES / "score-demo.yaml"),
            *(arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")), *more]
    return MediaJobsCli().start(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, **popen)


def _wait_for_line(job: subprocess.Popen, needle: str, seen: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for line in job.stdout:
        seen.append(line)
        if needle in line:
            return
        assert time.monotonic() < deadline, f"no {needle!r} within {timeout} s"
    raise AssertionError(f"the job ended before {needle!r}:\n" + "".join(seen)[-3000:])


def _wait_for_ray_data(seen: list[str]) -> None:
    """Until the run's Ray Data execution has started: Ray Data says so in the run's log file,
    whose path is the first line the CLI prints."""
    log = Path(next(line for line in seen if line.startswith("log: ")).split()[1])
    _wait_until(lambda: "Starting execution of Dataset" in log.read_text(errors="replace"), "Ray Data run")


def _seaweed_pid() -> int:
    home = Path(os.environ["MEDIAJOBS_HOME"])
    return json.loads((home / "stack.json").read_text())["processes"]["seaweedfs"]["pid"]


def _store_outage(seconds: float, until: Callable[[], bool] = lambda: False) -> None:
    """SIGKILL the stack's S3 server, wait `seconds` (less if `until()` holds before), and
    start it again with the stack's own `up`."""
    from cluster import local_stack as stack_module

    os.kill(_seaweed_pid(), signal.SIGKILL)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not until():
            time.sleep(0.2)
    finally:
        stack_module.up(Path(os.environ["MEDIAJOBS_HOME"]))


def _tables(output: str) -> set[str]:
    from jobs.storage.objects import list_objects

    return {o.uri[len(output):].split("/")[0] for o in list_objects(output)}


def _run_files(output: str) -> set[str]:
    """The names of the files under runs/<run_id>/ (every run's)."""
    from jobs.storage.objects import list_objects

    return {o.uri.rsplit("/", 1)[-1] for o in list_objects(output + "runs/")}


def _score_through_outage(output: str, outage_seconds: float, env: dict | None = None,
                          until_exit: bool = False) -> tuple[int, str]:
    """Run a score job, take the store away once it is fetching; (exit code, console output).
    `until_exit`: the outage ends early if the job has ended (failed) by then."""
    job, seen = _score(output, env=env), []
    try:
        _wait_for_line(job, "scoring", seen)  # listing done
        _wait_for_ray_data(seen)
        reader = _drain(job, seen)
        # The outage comes once the actors fetch and score: their first staged batch is in
        # the store (a fixed wait after listing once let a faster job reach its commit first).
        _wait_until(lambda: _staged_batches(output) or job.poll() is not None, "a staged batch")
        assert job.poll() is None, "the job finished before the outage; give it more images"
        _store_outage(outage_seconds, until=(lambda: job.poll() is not None) if until_exit else lambda: False)
        job.wait(timeout=600)
        reader.join(timeout=10)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    return job.returncode, "".join(seen)


def _staged_batches(output: str) -> list[str]:
    from jobs.storage.objects import list_objects

    return [o.uri for o in list_objects(f"{output}_staging/") if o.uri.endswith(".parquet")]


def _wait_until(condition: Callable[[], object], what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_store_outage_mid_scoring_is_waited_out_and_nothing_is_lost(archive):
    from jobs.storage.delta import read_table

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
    # The store stays away until the job has given up (at most 45 s): past its 5 s budget.
    code, log = _score_through_outage(output, outage_seconds=45, until_exit=True,
                                      env={**os.environ, "MEDIAJOBS_STORE_OUTAGE_SECONDS": "5"})
    assert code == 1, log[-3000:]
    assert "object store stopped answering" in log and "Nothing was committed" in log, log[-3000:]
    # No predictions/ or errors/, and no summary: a failed run leaves only its events under runs/.
    assert not _tables(output) - {"_staging", "_lock.json", "runs"}, _tables(output)
    assert _run_files(output) <= {"events.jsonl"}, _run_files(output)


def _drain(job: subprocess.Popen, seen: list[str]) -> threading.Thread:
    """Read the job's output in the background (a full pipe would stall it)."""
    reader = threading.Thread(target=lambda: seen.extend(job.stdout), daemon=True)
    reader.start()
    return reader


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_a_nightly_run_past_the_outage_budget_fails_clearly_and_its_rerun_finishes_the_date(model, ray_driver):
    """Incremental: the store goes as the route's scoring starts (its actors fetch the model,
    then the objects) and stays away until the run has failed (budget 2 s). Exit 1 with one
    line saying so; no table, manifest or summary visible; the re-run scores every object once."""
    from jobs.runs.dispatch import run_spec
    from jobs.spec.load import load_spec
    from jobs.storage.objects import list_objects
    from jobs.storage.delta import read_table

    _upload_images("nightly-in/", NIGHTLY_IMAGES)
    output, night = f"s3://{BUCKET}/nightly-outage/", "2026-11-20"
    nightly = ("--set", "incremental=true", "--run-date", night)
    job, seen = _score(output, *nightly, source="nightly-in/",
                       env={**os.environ, "MEDIAJOBS_STORE_OUTAGE_SECONDS": "2"}), []
    try:
        _wait_for_line(job, f"scoring {NIGHTLY_IMAGES} objects with", seen)  # the route's work list is read
        _wait_for_ray_data(seen)  # and its Ray Data run starts
        reader = _drain(job, seen)
        _store_outage(120, until=lambda: job.poll() is not None)
        job.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    log = "".join(seen)
    assert job.returncode == 1, log[-3000:]
    failure = [line for line in log.splitlines() if "object store stopped answering" in line]
    assert len(failure) == 1 and failure[0].startswith("job failed: the object store stopped answering: "), log[-3000:]
    assert "the budget is 2 s (MEDIAJOBS_STORE_OUTAGE_SECONDS)" in failure[0], failure
    assert f"Nothing was committed: {output} holds no results of run date {night}" in failure[0], failure
    assert "internal error" not in log, log[-3000:]  # (the actors' tracebacks are Ray's log forwarding)
    # No tables, no _manifest/, and no summary: a failed run leaves only its events under runs/.
    assert _tables(output) <= {"_staging", "_lock.json", "runs"}, _tables(output)
    assert _run_files(output) <= {"events.jsonl"}, _run_files(output)
    staged = [o.uri for o in list_objects(f"{output}_staging/run_date={night}/scored/")]

    spec = load_spec(EXAMPLES / "score-demo.yaml", [f"model=s3://{BUCKET}/m/model/", "incremental=true",
                                                    f"input=s3://{BUCKET}/nightly-in/", f"output={output}"])
    rerun = run_spec(spec, run_date=night, echo=lambda line: None)  # the lease left behind: its holder is gone
    assert rerun.committed and (rerun.resumed > 0) == bool(staged)  # rows staged before the outage are reused
    predictions = read_table(output + "predictions/").column("uri").to_pylist()
    assert "errors" not in _tables(output) or not read_table(output + "errors/").num_rows
    assert len(predictions) == len(set(predictions)) == NIGHTLY_IMAGES
