"""An output location that cannot be written is refused before any work, with a clear message.

Issue 8: "An output location that cannot be written (no bucket, no permission): a clear
error before any work is done." The permission case runs a job with the local stack's
read-only key pair (the `mediajobs-reader` identity of its SeaweedFS), exactly as a user
whose credentials may only read would.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from support.cli import MediaJobsCli
from support.media import image_bytes
from support.paths import ROOT

EXAMPLES = ROOT / "jobs" / "examples"
BUCKET = "it-output-location"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def archive(local_stack, export_test_model):
    from jobs.storage.objects import s3_client

    client = s3_client()
    client.create_bucket(Bucket=BUCKET)
    for i in range(3):
        client.put_object(Bucket=BUCKET, Key=f"in/img-{i}.jpg", Body=image_bytes(seed=i, size=(40, 32)))
    client.put_object(Bucket=BUCKET, Key="results/existing.txt", Body=b"kept")
    export_test_model(f"s3://{BUCKET}/m/", "image-classifier", "cifar10-cnn", {"input_shape": [32, 32, 3]})
    return client


def _reader_env(local_stack) -> dict[str, str]:
    from cluster.localstate import credentials_file

    creds = json.loads(credentials_file().read_text())
    return {**os.environ, "AWS_ENDPOINT_URL": local_stack.s3_endpoint, "AWS_DEFAULT_REGION": local_stack.region,
            "AWS_ACCESS_KEY_ID": creds["reader_access_key"], "AWS_SECRET_ACCESS_KEY": creds["reader_secret_key"]}


def _run(cli: MediaJobsCli, spec: str, env: dict[str, str] | None = None, **overrides: str) -> subprocess.CompletedProcess:
    args = ["run", str(EXAMPLES / spec), *(arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}"))]
    return cli(*args, timeout=300, env=env)


def _keys(client, bucket: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def _refused_before_work(result: subprocess.CompletedProcess, *needles: str) -> str:
    text = result.stdout + result.stderr
    assert result.returncode == 2, text[-3000:]
    assert "output not writable" in text and "Nothing was started" in text, text[-3000:]
    for needle in needles:
        assert needle in text, text[-3000:]
    assert "Traceback" not in text
    assert "scoring " not in text  # nothing was listed, no model was loaded
    return text


def test_a_missing_bucket_is_refused_where_jobs_may_not_create_buckets(mediajobs_cli, archive):
    env = {**os.environ, "MEDIAJOBS_CREATE_BUCKETS": "0"}  # what every store but the local stack gets
    result = _run(mediajobs_cli, "score-demo.yaml", env, model=f"s3://{BUCKET}/m/model/", input=f"s3://{BUCKET}/in/",
                  output="s3://it-no-such-bucket/scores/")
    _refused_before_work(result, "output: bucket 'it-no-such-bucket' does not exist",
                         "aws s3 mb s3://it-no-such-bucket", "MEDIAJOBS_CREATE_BUCKETS=1")
    assert "it-no-such-bucket" not in {b["Name"] for b in archive.list_buckets()["Buckets"]}


def test_credentials_that_may_only_read_are_refused_before_any_work(mediajobs_cli, archive, local_stack):
    before = _keys(archive, BUCKET)
    result = _run(mediajobs_cli, "score-demo.yaml", _reader_env(local_stack), model=f"s3://{BUCKET}/m/model/",
                  input=f"s3://{BUCKET}/in/", output=f"s3://{BUCKET}/results/")
    _refused_before_work(result, f"output: cannot write to s3://{BUCKET}/results/", "AccessDenied")
    assert _keys(archive, BUCKET) == before  # no probe, staging or result object left behind
    assert local_stack.secret_key not in result.stdout + result.stderr


def test_the_reader_key_pair_reads_but_cannot_create_a_bucket(mediajobs_cli, archive, local_stack):
    # Its reads work (so the refusals above are about writing, not about a broken key pair).
    from jobs.storage.settings import S3Settings
    from jobs.storage.objects import s3_client

    reader = _reader_env(local_stack)
    client = s3_client(S3Settings(local_stack.s3_endpoint, reader["AWS_ACCESS_KEY_ID"],
                                  reader["AWS_SECRET_ACCESS_KEY"], local_stack.region, "environment"))
    assert client.get_object(Bucket=BUCKET, Key="results/existing.txt")["Body"].read() == b"kept"
    result = _run(mediajobs_cli, "score-demo.yaml", reader, model=f"s3://{BUCKET}/m/model/", input=f"s3://{BUCKET}/in/",
                  output="s3://it-reader-new-bucket/x/")
    _refused_before_work(result, "output: cannot create bucket 'it-reader-new-bucket'", "AccessDenied")


def test_a_local_output_under_a_file_is_refused(mediajobs_cli, archive, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = _run(mediajobs_cli, "score-demo.yaml", model=f"s3://{BUCKET}/m/model/", input=f"s3://{BUCKET}/in/",
                  output=str(tmp_path / "a-file" / "scores"))
    _refused_before_work(result, "output: cannot create the folder")


@pytest.mark.parametrize("spec, overrides", [
    ("train-demo.yaml", {"data.train": f"s3://{BUCKET}/in/"}),
    ("generate-gan.yaml", {"model": f"s3://{BUCKET}/m/model/"}),
    ("stylize.yaml", {"input": f"s3://{BUCKET}/in/", "styles": f"[s3://{BUCKET}/in/img-0.jpg]"}),
    ("score-nightly.yaml", {"input": f"s3://{BUCKET}/in/"}),
])
def test_every_job_kind_checks_its_output_first(mediajobs_cli, archive, local_stack, spec, overrides):
    before = _keys(archive, BUCKET)
    result = _run(mediajobs_cli, spec, _reader_env(local_stack), output=f"s3://{BUCKET}/results/", **overrides)
    _refused_before_work(result, f"cannot write to s3://{BUCKET}/results/")
    assert _keys(archive, BUCKET) == before


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(mediajobs_cli, archive):
    # Two score runs into one output would each replace the tables with their own rows.
    from jobs.storage.lease import acquire_lease, release_lease

    output = f"s3://{BUCKET}/leased/"
    lease = acquire_lease(output, "run-in-progress")  # this live process: a run at work
    try:
        result = _run(mediajobs_cli, "score-demo.yaml", model=f"s3://{BUCKET}/m/model/", input=f"s3://{BUCKET}/in/", output=output)
        text = result.stdout + result.stderr
        assert result.returncode == 3, text[-3000:]
        assert "run refused: another run (run-in-progress on" in text and "Traceback" not in text
        assert "scoring " not in text
    finally:
        release_lease(lease)
    result = _run(mediajobs_cli, "score-demo.yaml", model=f"s3://{BUCKET}/m/model/", input=f"s3://{BUCKET}/in/", output=output)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert not {key for key in _keys(archive, BUCKET) if key.startswith("leased/_lock")}  # released at the end
