"""Poison objects are decoded in children a crash, a hang or a blow-up cannot take the worker
with (jobs/workers/decode_isolation.py, tasks/decode_child.py), and a worker holds a bounded number of
fetched bytes whatever the block size (jobs/workers/decoding.py)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import tasks  # noqa: F401
from jobs.workers.decode_isolation import decode_isolated, task_blob
from tasks import get_task
from tasks.decode_child import FAULT_PREFIX

# Every name a credential goes by where mediajobs runs: AWS SDKs, Ray, our own settings.
FAKE_SECRETS = {"AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE1234", "AWS_SECRET_ACCESS_KEY": "fake-secret-0123456789abcdef",
                "AWS_SESSION_TOKEN": "fake-session-token-xyz", "RAY_AUTH_TOKEN": "fake-ray-token-abc",
                "RAY_AUTH_TOKEN_PATH": "/secret/ray_auth_token", "MEDIAJOBS_S3_SECRET_KEY": "fake-mediajobs-secret",
                "AWS_SHARED_CREDENTIALS_FILE": "/secret/aws-credentials"}


@pytest.fixture
def image_task(monkeypatch):
    monkeypatch.setenv("MEDIAJOBS_DECODE_FAULTS", "1")
    task = get_task("image-classifier")(input_shape=[32, 32, 3])
    return task, task_blob(task)


def test_a_child_sees_no_credential_token_or_open_file_of_its_worker(image_task, monkeypatch, tmp_path):
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)
    secret_file = open(tmp_path / "held-open", "w")  # a file the worker holds open
    task, _ = image_task
    [(decoded, stage, reason, _)] = decode_isolated(task, task_blob(task), [FAULT_PREFIX + b"environ"], 10.0)
    secret_file.close()
    assert decoded is None and stage == "decode" and reason.startswith("environ ")
    seen = json.loads(reason.removeprefix("environ "))
    assert not [v for v in FAKE_SECRETS.values() if v in reason]
    assert set(seen["env"]) <= {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "VIRTUAL_ENV", "TF_USE_LEGACY_KERAS",
                                "OMP_NUM_THREADS", "MEDIAJOBS_DECODE_FAULTS", "MEDIAJOBS_DECODE_MEMORY_BYTES",
                                "MEDIAJOBS_MAX_PIXELS", "HOME", "TMPDIR", "PYTHONPATH", "LC_CTYPE"}
    assert seen["home"] == [] and seen["env"]["HOME"] != os.environ.get("HOME")
    assert not any("held-open" in target for target in seen["fds"].values())
    assert set(seen["fds"]) <= {"0", "1", "2", "3"}, seen["fds"]  # stdin, stdout, stderr, the listing itself


def test_an_aborting_decoder_is_a_crash_row_after_one_retry(image_task):
    task, blob = image_task
    [(decoded, stage, reason, _)] = decode_isolated(task, blob, [FAULT_PREFIX + b"abort"], 10.0)
    assert decoded is None and stage == "crash" and "killed by signal SIGABRT" in reason
    good = decode_isolated(task, blob, [_jpeg()], 10.0)[0][0]  # the next object gets a fresh child
    assert good.examples.shape == (1, 32, 32, 3)


def test_the_objects_of_a_group_around_a_crash_are_all_decoded(image_task):
    """One round trip per group: the child dies on the second object; the first keeps its
    answer, the second is tried once more alone and becomes a crash row, the rest go on."""
    task, blob = image_task
    sources = [_jpeg(1), FAULT_PREFIX + b"abort", _jpeg(2), b"not an image", _jpeg(3)]
    answers = decode_isolated(task, blob, sources, 10.0)
    assert [answer.stage for answer in answers] == [None, "crash", None, "decode", None]
    assert all(answers[i][0].examples.shape == (1, 32, 32, 3) for i in (0, 2, 4))


def test_a_decoder_stuck_in_c_is_killed_at_the_budget(image_task):
    task, blob = image_task
    began = time.monotonic()
    [(decoded, stage, reason, took)] = decode_isolated(task, blob, [FAULT_PREFIX + b"hang"], 1.0)
    waited = time.monotonic() - began
    assert decoded is None and stage == "timeout" and "longer than the 1 s budget" in reason
    assert 1.0 + 5.0 <= took <= waited  # its own seconds (the last try's), for the slowest-objects list
    assert waited < 2 * (1.0 + 5.0) + 4, waited  # two tries, each the budget plus the grace


def test_a_decoder_past_its_address_space_limit_is_an_out_of_memory_row(image_task, monkeypatch):
    monkeypatch.setenv("MEDIAJOBS_DECODE_MEMORY_BYTES", str(1 << 30))
    task, blob = image_task
    [(decoded, stage, reason, _)] = decode_isolated(task, task_blob(task), [FAULT_PREFIX + b"alloc"], 10.0)
    assert decoded is None and stage == "crash" and "out of memory" in reason and "1 GiB" in reason


def test_what_a_child_answers_is_checked_not_trusted(monkeypatch):
    from support.decode_tasks import LyingTask

    task = LyingTask()
    [(decoded, stage, reason, _)] = decode_isolated(task, task_blob(task), [b"anything"], 10.0)
    assert decoded is None and stage == "crash" and "not uint8 (n, 4, 4, 3)" in reason


@pytest.mark.parametrize("header", [[1, 2], {"ok": True}, {"ok": True, "dtype": "|u1", "shape": [-1, 4, 4, 3],
                                                             "positions": [{}]},
                                    {"ok": True, "dtype": 7, "shape": "x", "positions": None}])
def test_a_malformed_answer_is_the_childs_crash_never_the_workers(header):
    from jobs.workers.decode_isolation import ChildLost, DecodeChild

    with pytest.raises(ChildLost, match="answered"):
        DecodeChild._checked(header, b"", (4, 4, 3), np.uint8)


def test_isolated_and_in_process_decoding_give_the_same_examples(monkeypatch, tmp_path):
    from jobs.workers.decoding import fetch_and_decode

    task = get_task("image-classifier")(input_shape=[32, 32, 3])
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"img-{i}.jpg")
        paths[-1].write_bytes(_jpeg(seed=i))
    batch = {"uri": np.array([str(p) for p in paths], dtype=object), "size": np.array([p.stat().st_size for p in paths])}
    isolated = fetch_and_decode(batch, task=task, keep_errors=True)
    monkeypatch.setenv("MEDIAJOBS_DECODE_ISOLATION", "0")
    in_process = fetch_and_decode(batch, task=task, keep_errors=True)
    assert np.array_equal(isolated["example"], in_process["example"]) and not any(isolated["error"])


def test_fetched_bytes_held_stay_within_the_budget_whatever_the_block(monkeypatch, tmp_path):
    """64 objects of 8 MiB in one block with a 32 MiB budget: never more than 4 held at once."""
    import jobs.workers.decoding as decoding

    monkeypatch.setenv("MEDIAJOBS_FETCH_BUDGET_BYTES", str(32 << 20))
    task = get_task("image-classifier")(input_shape=[32, 32, 3])
    big = tmp_path / "big.jpg"
    big.write_bytes(_jpeg() + bytes(8 << 20))  # a JPEG followed by 8 MiB of trailing bytes
    size = big.stat().st_size
    peak, real_give = [0], decoding._BUDGET.give

    def watched(held: int) -> None:
        peak[0] = max(peak[0], decoding._BUDGET.held)
        real_give(held)

    monkeypatch.setattr(decoding._BUDGET, "give", watched)
    batch = {"uri": np.array([str(big)] * 64, dtype=object), "size": np.array([size] * 64)}
    out = decoding.fetch_and_decode(batch, task=task, keep_errors=True)
    assert len(out["uri"]) == 64 and not any(out["error"])
    assert size * 2 <= peak[0] <= 32 << 20, peak[0]
    assert decoding._BUDGET.held == 0


def _jpeg(seed: int = 0) -> bytes:
    from support.media import image_bytes

    return image_bytes("JPEG", (40, 30), seed)
