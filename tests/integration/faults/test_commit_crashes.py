"""The crash matrix: a run's driver SIGKILLed at every storage write it makes, then re-run.

The write points are found, not listed: every PUT, POST and DELETE the driver sends
(boto3, pyarrow and delta-rs alike) goes through `StoreProxy` in front of the real
SeaweedFS, which kills the driver before the Nth write lands, for every N the run makes.
After each kill, what a reader sees is checked (each table holds the previous run or the
new one, whole; a nightly date is absent or whole); after the re-run, every object has
exactly one outcome, the summary matches the tables, and no staging or lease is left.
The driver (tests/support/lifecycle_driver.py) runs the real lifecycle without Ray; write
points run a few at once (commit_faults.each_point), each with its own proxy and output.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import pytest

from . import commit_faults as faults
from support import lifecycle_driver
from .commit_faults import NIGHTS
from jobs.storage.objects import list_objects, read_bytes
from support.store_proxy import StoreProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
OLD_OBJECTS, NEW_OBJECTS = 10, 13


def _killed_at(proxy: StoreProxy, stack, n: int, *args: str) -> str:
    """Run the driver through the proxy, SIGKILLed before its write n lands; its output."""
    proxy.reset()
    proc = faults.driver(proxy, stack, *args)
    proxy.on_kill = lambda: os.killpg(proc.pid, signal.SIGKILL)
    proxy.on_write = StoreProxy.act_at(n, "kill-before", after="kill-before")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    return out


def test_a_plain_run_killed_at_every_write_reruns_whole(bucket, local_stack):
    old_output = bucket + "plain-old/"
    old_run = lifecycle_driver.plain(old_output, OLD_OBJECTS, "model-old")
    old = {name: faults.table(old_output, name).num_rows for name in ("predictions", "errors")}
    with StoreProxy(local_stack.s3_endpoint) as proxy:
        writes = faults.baseline(proxy, local_stack, "plain", bucket + "plain-baseline/", str(NEW_OBJECTS), "model-new")
    assert len(writes) >= 12, writes

    def killed_and_rerun(proxy: StoreProxy, n: int) -> None:
        output = f"{bucket}plain-{n:03d}/"
        faults.copy_prefix(old_output, output)
        _killed_at(proxy, local_stack, n, "plain", output, str(NEW_OBJECTS), "model-new")
        for name, rows in old.items():  # each table is the old run or the new one, whole
            table = faults.table(output, name)
            run_ids = set(table.column("run_id").to_pylist())
            assert len(run_ids) == 1, (n, writes[n - 1], name, run_ids)
            if run_ids == {old_run}:
                assert table.num_rows == rows, (n, name)
            else:
                assert table.num_rows == {"predictions": 11, "errors": 2}[name], (n, writes[n - 1], name)

        rerun = lifecycle_driver.plain(output, NEW_OBJECTS, "model-new")
        predictions, errors = faults.table(output, "predictions"), faults.table(output, "errors")
        outcomes = Counter(predictions.column("uri").to_pylist() + errors.column("uri").to_pylist())
        assert len(outcomes) == NEW_OBJECTS and set(outcomes.values()) == {1}, (n, writes[n - 1])
        assert set(predictions.column("run_id").to_pylist() + errors.column("run_id").to_pylist()) == {rerun}
        summary = json.loads(read_bytes(f"{output}runs/{rerun}/summary.json"))
        assert (summary["predicted"], summary["errors"]) == (predictions.num_rows, errors.num_rows)
        assert not faults.left_behind(output), (n, writes[n - 1], faults.left_behind(output))

    faults.each_point(local_stack, range(1, len(writes) + 1), killed_and_rerun)




def test_a_nightly_run_killed_at_every_write_reruns_whole(bucket, local_stack):
    archive, model = bucket + "archive/", faults.model(bucket + "model/")
    faults.archive(archive, 1)
    first_output = bucket + "nightly-first/"
    lifecycle_driver.nightly(first_output, archive, model, NIGHTS[0])
    tables = ("predictions", "errors")
    first = {name: faults.night_rows(first_output, name, NIGHTS[0]) for name in tables}
    faults.archive(archive, 2)
    with StoreProxy(local_stack.s3_endpoint) as proxy:
        baseline_output = bucket + "nightly-baseline/"
        faults.copy_prefix(first_output, baseline_output)
        writes = faults.baseline(proxy, local_stack, "nightly", baseline_output, archive, model, NIGHTS[1])
    second = {name: faults.night_rows(baseline_output, name, NIGHTS[1]) for name in tables}
    assert second == {"predictions": 5, "errors": 1} and len(writes) >= 20, (second, writes)

    def killed_and_rerun(proxy: StoreProxy, n: int) -> None:
        output = f"{bucket}nightly-{n:03d}/"
        faults.copy_prefix(first_output, output)
        _killed_at(proxy, local_stack, n, "nightly", output, archive, model, NIGHTS[1])
        for name in tables:  # the first night untouched; the second absent or whole
            assert faults.night_rows(output, name, NIGHTS[0]) == first[name], (n, writes[n - 1], name)
            assert faults.night_rows(output, name, NIGHTS[1]) in (0, second[name]), (n, writes[n - 1], name)

        lifecycle_driver.nightly(output, archive, model, NIGHTS[1])
        rows = {name: faults.table(output, name).to_pylist() for name in tables}
        assert {name: faults.night_rows(output, name, NIGHTS[1]) for name in tables} == second, (n, writes[n - 1])
        versions = Counter((r["uri"], r["etag"], r["model_id"]) for name in tables for r in rows[name])
        now = {(o.uri, o.etag) for o in list_objects(archive)}
        assert set(versions.values()) == {1} and now <= {(u, e) for u, e, _ in versions}, (n, writes[n - 1])
        run_id = next(r["run_id"] for r in rows["predictions"] if r["run_date"] == NIGHTS[1])
        summary = json.loads(read_bytes(f"{output}runs/{run_id}/summary.json"))
        assert summary["tables"]["predictions"] == second["predictions"], (n, writes[n - 1])
        assert not faults.left_behind(output), (n, writes[n - 1], faults.left_behind(output))

    faults.each_point(local_stack, range(1, len(writes) + 1), killed_and_rerun)
