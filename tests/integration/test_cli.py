"""The CLI as a user runs it against the local stack: resume after a kill, ingest from a tarball,
what a run prints and the log it keeps."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from jobs.models.store import read_model_metadata
from support.paths import EXAMPLES


def test_killed_training_resumes_from_its_last_checkpoint(mediajobs_cli, local_stack, tmp_path):
    from jobs.datasets.ingest import ingest_folder
    from jobs.datasets.synthetic import write_shapes_dataset
    from jobs.storage.objects import exists

    write_shapes_dataset(tmp_path / "data", per_class_train=40, per_class_test=10, seed=3)
    ingest_folder(tmp_path / "data", "s3://it-media/resume/")
    overrides = ["--set", "data.train=s3://it-media/resume/train/", "--set", "data.validation=s3://it-media/resume/test/",
                 "--set", "training.epochs=6", "--set", "training.batch_size=16", "--set", "output=s3://it-models/resume/"]
    log = open(tmp_path / "first.log", "w")
    first = mediajobs_cli.start("run", str(EXAMPLES / "train-demo.yaml"), *overrides, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    snapshot = "s3://it-models/resume/train/checkpoint_manager_snapshot.json"
    try:
        deadline = time.monotonic() + 300
        while not exists(snapshot):  # Ray Train records a checkpoint after each reported epoch
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver dies mid-run, as on a crash
        first.wait()
    assert not exists("s3://it-models/resume/model/LATEST"), "the first run must not have finished"

    second = mediajobs_cli("run", str(EXAMPLES / "train-demo.yaml"), *overrides)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-3000:]
    assert "resuming from checkpoint after epoch" in output
    metadata = read_model_metadata("s3://it-models/resume/")
    assert [h["epoch"] for h in metadata["history"]] == [1, 2, 3, 4, 5, 6]
    assert "model: s3://it-models/resume/model/" in second.stdout
    # Rank 0's epoch lines reach the console once each (issue 21), the rest of Ray's output does not.
    epochs = [line for line in second.stdout.splitlines() if line.startswith("epoch epoch=")]
    assert epochs and len(epochs) == len(set(epochs)) and "(RayTrainWorker" not in second.stdout, second.stdout


def test_ingest_cifar10_from_a_tarball(mediajobs_cli, local_stack, tmp_path):
    from support.media import write_cifar10_tarball

    from jobs.storage.objects import list_objects

    tarball = write_cifar10_tarball(tmp_path / "cifar-10-python.tar.gz", per_batch=4, test_count=6)
    result = mediajobs_cli("ingest", "cifar10", "--source", str(tarball), "--dest", "s3://it-cifar/cifar10/")
    assert result.returncode == 0, result.stderr
    keys = [o.uri for o in list_objects("s3://it-cifar/cifar10/")]
    assert len([k for k in keys if "/train/" in k]) == 20 and len([k for k in keys if "/test/" in k]) == 6
    assert all(k.endswith(".png") for k in keys)
    again = mediajobs_cli("ingest", "cifar10", "--source", str(tarball), "--dest", "s3://it-cifar/cifar10/")
    assert again.returncode == 0 and "'skipped': 26" in again.stdout


def test_a_run_prints_our_lines_and_keeps_the_rest_in_its_log(mediajobs_cli, export_test_model, local_stack):
    """Issue 21: Ray's, Ray Data's and TensorFlow's output in the run's log file (its path the
    first line), kept beside the run's summary; on the terminal, our lines only."""
    from jobs.storage.objects import read_bytes, write_bytes
    from support.media import image_bytes

    for i in range(4):
        write_bytes(f"s3://it-media/console/img-{i}.jpg", image_bytes(seed=i))
    write_bytes("s3://it-media/console/broken.jpg", b"not a picture")
    export_test_model("s3://it-models/console/")
    result = mediajobs_cli("run", str(EXAMPLES / "score-demo.yaml"), "--set", "model=s3://it-models/console/",
                           "--set", "input=s3://it-media/console/", "--set", "output=s3://it-scores/console/")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("log: ") and result.stderr == "", (lines[:3], result.stderr[-3000:])
    log = lines[0].split()[1]
    written = open(log).read()
    assert "Starting execution of Dataset" in written  # Ray Data's own lines
    assert not [line for line in lines if "Dataset" in line or "pid=" in line or "tensorflow" in line.lower()], lines
    assert len(lines) <= 12, lines
    summary = next(line.split()[1] for line in lines if line.startswith("summary:"))
    kept = summary.rsplit("/", 1)[0] + "/job.log"
    assert ["log:", kept] in [line.split() for line in lines]
    assert read_bytes(kept).decode().startswith(written[:2000])
