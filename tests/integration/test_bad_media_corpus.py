"""The bad-media corpus (tests/support/badmedia/) through the real score jobs, and its kinds through
the decoders alone.

Integration tests upload every kind to the real local S3 store and score it on the real
local Ray with seeded, untrained models: each object must be scored or refused with a
reason naming the problem, the job must return, and no input object may change.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from support import badmedia as bm
from support.paths import EXAMPLES

BUCKET = "it-badmedia"
CLASSES = ("cat", "dog", "bird")
SPECS = {"image": "score-demo.yaml", "video": "score-video.yaml", "audio": "score-audio.yaml"}
TASKS = bm.TASKS
EXAMPLE_TABLES = {"image": "predictions", "video": "frames", "audio": "predictions"}
OBJECT_TABLES = {"video": ("videos", "frames_scored"), "audio": ("files", "windows_scored")}


@pytest.fixture(scope="module")
def models(ray_driver) -> dict[str, str]:
    """Seeded, untrained models exported where a train job would put them (scoring does not
    depend on what the weights learnt)."""
    from jobs.bench.models import export_model

    return {modality: export_model(f"s3://{BUCKET}/models/{modality}/", name, architecture, config, CLASSES)
            for modality, (name, architecture, config) in TASKS.items()}


def _snapshot(prefix: str) -> dict[str, tuple[str, str]]:
    """Every object under `prefix`: key -> (ETag, sha256 of its content as stored)."""
    from jobs.storage.objects import s3_client

    client, out = s3_client(), {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            out[item["Key"]] = (item["ETag"], hashlib.sha256(body).hexdigest())
    return out


def _upload(prefix: str, objects: dict[str, bytes]) -> dict[str, tuple[str, str]]:
    from jobs.storage.objects import s3_client

    client = s3_client()
    for key, data in objects.items():
        client.put_object(Bucket=BUCKET, Key=prefix + key, Body=data)
    stored = _snapshot(prefix)
    # The store kept every key and byte as written: the job sees exactly the corpus.
    assert {key: sha for key, (_, sha) in stored.items()} == {
        prefix + key: hashlib.sha256(data).hexdigest() for key, data in objects.items()}
    return stored


def _score(modality: str, model: str, prefix: str, output: str):
    from jobs.runs.dispatch import run_spec
    from jobs.spec.load import load_spec

    overrides = [f"model={model}", f"input=s3://{BUCKET}/{prefix}", f"output=s3://{BUCKET}/{output}",
                 "resources.concurrency=1"] + (["annotate=false"] if modality == "video" else [])
    return run_spec(load_spec(EXAMPLES / SPECS[modality], overrides), echo=lambda line: None)


def _rows(uri: str) -> list[dict]:
    from jobs.storage.delta import read_table
    from jobs.storage.objects import list_objects

    return read_table(uri).to_pylist() if any(True for _ in list_objects(uri)) else []


def _check_accounting(modality: str, result, expected_uris: set[str], context: str = "") -> tuple[Counter, dict]:
    """Every listed object has example rows or one errors row (a partial decode: both, the
    errors row with stage decode-partial); every errors row has uri, stage and a reason.

    Returns (example rows per uri, errors row per uri).
    """
    examples = Counter(row["uri"] for row in _rows(result.tables[EXAMPLE_TABLES[modality]]))
    error_rows = _rows(result.errors_uri)
    errors = {row["uri"]: row for row in error_rows}
    assert len(errors) == len(error_rows), f"{context}an object has two errors rows"
    for row in error_rows:
        assert row["uri"] and row["stage"] in ("read", "decode", "decode-partial") and row["error"].strip(), \
            f"{context}{row}"
    failed = {uri for uri, row in errors.items() if row["stage"] != "decode-partial"}
    partial = set(errors) - failed
    assert set(examples) | failed == expected_uris, f"{context}missing: {expected_uris - set(examples) - failed}"
    assert not set(examples) & failed, f"{context}both scored and failed: {set(examples) & failed}"
    assert partial <= set(examples), f"{context}partial without examples: {partial - set(examples)}"
    assert (result.listed, result.predicted, result.errors, result.partial) == (
        len(expected_uris), len(set(examples)), len(failed), len(partial)), context
    if modality in OBJECT_TABLES:
        table, count_column = OBJECT_TABLES[modality]
        per_object = {row["uri"]: row[count_column] for row in _rows(result.tables[table])}
        assert per_object == dict(examples), context
    return examples, errors


@pytest.mark.timeout(600)
@pytest.mark.parametrize("modality", bm.MODALITIES)
def test_every_kind_is_scored_or_refused_and_inputs_are_untouched(models, modality):
    from jobs.storage.delta import read_table
    from jobs.storage.objects import list_objects

    objects = bm.corpus(modality, seed=1)
    prefix, output = f"corpus/{modality}/", f"scores/{modality}/"
    before = _upload(prefix, {key: data for key, (_, data) in objects.items()})
    uri_of = {key: f"s3://{BUCKET}/{prefix}{key}" for key in objects}
    # Odd key names ('#', '?', '%20', '..') are listed as written, not lost or rewritten.
    assert {o.uri for o in list_objects(f"s3://{BUCKET}/{prefix}")} == set(uri_of.values())

    result = _score(modality, models[modality], prefix, output)

    examples, errors = _check_accounting(modality, result, set(uri_of.values()))
    wrong = []
    for key, (kind, _) in objects.items():
        uri = uri_of[key]
        got = (bm.PARTIAL if uri in errors and uri in examples else bm.ERROR if uri in errors else bm.SCORED)
        reason = errors[uri]["error"] if uri in errors else ""
        if got != kind.expect or (kind.reason and not re.search(kind.reason, reason)):
            wrong.append(f"{kind.name} {key!r}: expected {kind.expect} /{kind.reason}/, got {got} {reason!r}")
    assert not wrong, "\n".join(wrong)
    assert all(row["stage"] == "decode" for row in errors.values() if row["stage"] != "decode-partial")

    labels = read_table(result.tables[EXAMPLE_TABLES[modality]], columns=["label"]).column("label").to_pylist()
    assert set(labels) <= set(CLASSES)
    if modality == "audio":
        files = {row["uri"]: row for row in _rows(result.tables["files"])}
        long_file = files[uri_of["long-10-min.wav"]]
        assert long_file["windows_scored"] == bm.LONG_AUDIO_SECONDS
        assert long_file["duration_s"] == pytest.approx(bm.LONG_AUDIO_SECONDS)
        assert files[uri_of["truncated.wav"]]["duration_s"] == pytest.approx(1.5)
    # Scoring read the inputs and wrote only under the output prefix.
    assert _snapshot(prefix) == before


@pytest.mark.timeout(120)
@pytest.mark.parametrize("reads", ["bytes", "file"])
def test_a_key_with_an_empty_segment_is_fetched(local_stack, tmp_path, reads):
    """S3 allows "a//b.jpg" and pyarrow refuses to address it (ArrowInvalid, which used to
    escape the fetch stage and fail the whole job). SeaweedFS stores such a key as "a/b.jpg"
    and answers a GET of "a//b.jpg" with it, so the listing here cannot produce one: the
    URI is written by hand, as an S3 listing would give it."""
    from jobs.storage.objects import s3_client
    from jobs.storage.checks import ensure_bucket
    from jobs.workers.decoding import fetch_object

    ensure_bucket(f"s3://{BUCKET}/")
    data = bm.image_bytes("JPEG", (24, 24), 3)
    s3_client().put_object(Bucket=BUCKET, Key="slashes/a/b.jpg", Body=data)
    source, error = fetch_object(f"s3://{BUCKET}/slashes/a//b.jpg", len(data), reads, str(tmp_path))
    assert error is None
    assert (source if reads == "bytes" else Path(source).read_bytes()) == data
    source, error = fetch_object(f"s3://{BUCKET}/slashes/a//missing.jpg", 1, reads, str(tmp_path))
    assert source is None and "NoSuchKey" in error


@pytest.mark.timeout(600)
def test_a_random_corpus_never_seen_is_fully_accounted_for(models):
    seed = int(os.environ.get("BADMEDIA_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"random bad-media corpus seed: {seed} (rerun with BADMEDIA_SEED={seed})")
    context = f"[BADMEDIA_SEED={seed}] "
    for modality, objects in bm.random_corpus(seed, count=18).items():
        if not objects:
            continue
        prefix = f"random-{seed}/{modality}/"
        before = _upload(prefix, {key: data for key, (_, data) in objects.items()})
        result = _score(modality, models[modality], prefix, f"random-scores-{seed}/{modality}/")
        _check_accounting(modality, result, {f"s3://{BUCKET}/{key}" for key in before}, context)
        assert _snapshot(prefix) == before, context
