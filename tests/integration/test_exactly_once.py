"""The exactly-once contract of scoring, pinned: one final outcome per (uri, etag, model_id)
across `predictions` and `errors`, where final means `superseded_on IS NULL`. A read that
fails one night and works the next supersedes its errors row in the same commit that adds
the prediction; a model change scores everything again under the new model and says so.
Runs the real nightly lifecycle against the real store, without Ray (tests/support/lifecycle_driver.py).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from support import lifecycle_driver
from jobs.storage.delta import read_table
from jobs.storage.contract import OUTCOME_KEY
from jobs.storage.objects import list_objects, read_bytes, write_bytes
from jobs.storage.checks import ensure_bucket

pytestmark = pytest.mark.integration
NIGHTS = ("2026-12-01", "2026-12-02", "2026-12-03")


def _model(uri: str, model_id: str) -> str:
    return lifecycle_driver.stub_model(uri, model_id)


def _summary(output: str, result) -> dict:
    return json.loads(read_bytes(f"{output}runs/{result.run_id}/summary.json"))


def test_one_final_outcome_per_object_version_and_model(local_stack, monkeypatch):
    ensure_bucket("s3://it-once/")
    archive, output = "s3://it-once/archive/", "s3://it-once/scores/"
    for name in ("img-0.jpg", "img-1.jpg", "img-2.jpg", "flaky-3.jpg", "bad-4.jpg"):
        write_bytes(archive + name, name.encode())
    first, second = _model("s3://it-once/m1/model/", "model-1"), _model("s3://it-once/m2/model/", "model-2")

    lifecycle_driver.nightly(output, archive, first, NIGHTS[0])  # the flaky read fails
    monkeypatch.setenv("FLAKY_READS_OK", "1")
    retried = lifecycle_driver.nightly(output, archive, first, NIGHTS[1])  # and is retried: a prediction
    assert _summary(output, retried)["decisions"]["retry"] == 1
    errors = read_table(output + "errors/").to_pylist()
    flaky = [e for e in errors if e["uri"].endswith("flaky-3.jpg")]
    assert [(e["run_date"], e["stage"], e["superseded_on"]) for e in flaky] == [(NIGHTS[0], "read", NIGHTS[1])]
    assert [e["superseded_on"] for e in errors if e["uri"].endswith("bad-4.jpg")] == [None]  # not retried: final

    changed = lifecycle_driver.nightly(output, archive, second, NIGHTS[2])  # a new model scores everything again
    assert _summary(output, changed)["decisions"]["other-model"] == 5

    predictions, errors = read_table(output + "predictions/"), read_table(output + "errors/")
    final = predictions.to_pylist() + [e for e in errors.to_pylist() if e["superseded_on"] is None]
    outcomes = Counter(tuple(row[k] for k in OUTCOME_KEY) for row in final)
    assert set(outcomes.values()) == {1}, outcomes
    objects = {(o.uri, o.etag) for o in list_objects(archive)}
    assert set(outcomes) == {(uri, etag, model) for uri, etag in objects for model in ("model-1", "model-2")}
    # Without the filter a reader would see the flaky object twice under model-1.
    everything = Counter(tuple(row[k] for k in OUTCOME_KEY) for row in predictions.to_pylist() + errors.to_pylist())
    assert [key for key, n in everything.items() if n > 1] == [
        (archive + "flaky-3.jpg", next(e for u, e in objects if u.endswith("flaky-3.jpg")), "model-1")]


def test_a_nightly_output_of_the_earlier_layout_converts_and_goes_on(local_stack):
    """An output written before Delta tables (hive folders of plain Parquet, without the
    columns added since) is refused, converted in place by `mediajobs tables convert`, and
    the next night adds its date to it: old rows kept, the new columns null in them."""
    import pyarrow.parquet as pq

    from jobs.cli.app import main
    from jobs.storage.delta import LegacyLayoutError
    from jobs.storage.objects import delete_prefix, filesystem_for, parse_uri

    ensure_bucket("s3://it-once/")
    archive, output = "s3://it-once/legacy-archive/", "s3://it-once/legacy-scores/"
    for name in ("img-0.jpg", "img-1.jpg", "bad-2.jpg"):
        write_bytes(archive + name, name.encode())
    model = _model("s3://it-once/m3/model/", "model-3")
    lifecycle_driver.nightly(output, archive, model, NIGHTS[0])
    location = parse_uri(output).as_prefix()
    fs = filesystem_for(location)
    for name in ("predictions", "errors"):  # back to the earlier layout
        rows = read_table(output + name + "/").drop_columns(
            [c for c in ("scored_at", "superseded_on", "run_date") if c in read_table(output + name + "/").column_names])
        delete_prefix(location.join(name).uri)
        pq.write_table(rows, location.join(name, f"run_date={NIGHTS[0]}", "part-00000.parquet").fs_path, filesystem=fs)

    write_bytes(archive + "img-3.jpg", b"img-3")
    with pytest.raises(LegacyLayoutError, match=r"tables convert s3://it-once/legacy-scores/"):
        lifecycle_driver.nightly(output, archive, model, NIGHTS[1])
    assert main(["tables", "convert", output]) == 0
    lifecycle_driver.nightly(output, archive, model, NIGHTS[1])
    predictions = read_table(output + "predictions/").to_pylist()
    assert sorted((r["run_date"], r["uri"].rsplit("/", 1)[-1]) for r in predictions) == [
        (NIGHTS[0], "img-0.jpg"), (NIGHTS[0], "img-1.jpg"), (NIGHTS[1], "img-3.jpg")]
    assert [r["scored_at"] is None for r in sorted(predictions, key=lambda r: r["run_date"])] == [True, True, False]
    errors = read_table(output + "errors/").to_pylist()
    assert [(e["run_date"], e["superseded_on"]) for e in errors] == [(NIGHTS[0], None)]
