"""jobs/workers/mwms_backend.py: Ray Train's TensorFlow backend without TensorFlow in the controller."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

from support.paths import ROOT, python_path


def test_the_controller_can_unpickle_the_config_without_importing_tensorflow():
    from jobs.workers.mwms_backend import MwmsConfig

    payload = pickle.dumps(MwmsConfig())
    probe = ("import pickle, sys; config = pickle.loads(sys.stdin.buffer.read()); config.backend_cls; "
             "print(config.framework.value, 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], input=payload, capture_output=True, cwd=ROOT, timeout=120,
                          env={"PYTHONPATH": python_path(), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["tensorflow", "False"]


def test_each_worker_gets_the_tf_config_of_its_rank(monkeypatch):
    from jobs.workers.mwms_backend import set_tf_config, worker_address

    monkeypatch.setenv("TF_CONFIG", "")  # restored (unset) after the test: later MWMS tests must not see it
    host, port = worker_address().rsplit(":", 1)
    assert host and 0 < int(port) < 65536
    set_tf_config(["10.0.0.1:2222", "10.0.0.2:2222"], 1)
    assert json.loads(os.environ["TF_CONFIG"]) == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
                                                   "task": {"type": "worker", "index": 1}}
