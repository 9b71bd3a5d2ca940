"""Faults injected for real into training: a Ray Train worker SIGKILLed mid-epoch.

Ray Train sees the dead worker, restarts the worker group (`training.max_failures`) and
every rank resumes from the last reported checkpoint; the job then finishes every epoch
and its model is as good as an undisturbed run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from jobs.models.store import read_model_metadata
from support.paths import ROOT

EXAMPLES = ROOT / "jobs" / "examples"
MEDIAJOBS = [sys.executable, "-m", "jobs.cli.app"]
EPOCHS = 6


@pytest.fixture(scope="module")
def shapes(local_stack, tmp_path_factory):
    from jobs.datasets.ingest import ingest_folder
    from jobs.datasets.synthetic import write_shapes_dataset

    root = tmp_path_factory.mktemp("fault-shapes")
    write_shapes_dataset(root, per_class_train=60, per_class_test=20, seed=5)
    ingest_folder(root, "s3://it-faults/shapes/")
    return "s3://it-faults/shapes/"


def _train_args(output: str) -> list[str]:
    overrides = {"data.train": "s3://it-faults/shapes/train/", "data.validation": "s3://it-faults/shapes/test/",
                 "training.epochs": str(EPOCHS), "training.batch_size": "16", "output": output}
    return [*MEDIAJOBS, "run", str(EXAMPLES / "train-demo.yaml"),
            *(arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}"))]


def _history(output: str) -> list[dict]:
    return read_model_metadata(output)["history"]


def _train_workers() -> list[psutil.Process]:
    """The live Ray Train worker processes of this session's stack."""
    home = os.environ["MEDIAJOBS_HOME"]
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "RayTrainWorker" in " ".join(process.info["cmdline"] or []) and \
                    process.environ().get("MEDIAJOBS_LOCAL_STACK") == home:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_killed_training_worker_is_replaced_and_training_resumes(shapes, tmp_path):
    from jobs.storage.objects import exists

    calm = subprocess.run(_train_args("s3://it-faults/calm/"), capture_output=True, text=True, timeout=600)
    assert calm.returncode == 0, (calm.stdout + calm.stderr)[-3000:]

    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as log:
        job = subprocess.Popen(_train_args("s3://it-faults/killed/"), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            # After the first checkpoint, kill a worker in the middle of the next epoch.
            deadline = time.monotonic() + 300
            while not exists("s3://it-faults/killed/train/checkpoint_manager_snapshot.json"):
                assert job.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint within 300 s"
                time.sleep(0.2)
            workers = _train_workers()
            assert len(workers) == 2, f"expected the 2 training workers, found {workers}"
            victim = workers[-1]
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            assert job.wait(timeout=600) == 0, log_path.read_text()[-3000:]
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
    output = log_path.read_text()
    assert "resuming from checkpoint after epoch" in output, output[-3000:]

    calm_history, killed_history = _history("s3://it-faults/calm/"), _history("s3://it-faults/killed/")
    assert [h["epoch"] for h in killed_history] == list(range(1, EPOCHS + 1))  # none lost, none twice
    calm_accuracy, killed_accuracy = calm_history[-1]["val_accuracy"], killed_history[-1]["val_accuracy"]
    assert calm_accuracy > 0.6, calm_history  # three shapes: chance is 1/3
    assert killed_accuracy >= calm_accuracy - 0.15, (calm_history, killed_history)
