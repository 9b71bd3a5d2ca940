"""Incremental scoring of a growing mixed archive over several nights, on the real stack:
routes by media, new/changed/deleted objects, a night killed part way and re-run, the
exactly-once invariant over all nights, summaries that match the tables, the error budget
and the lease."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from support import media
from support.cli import MediaJobsCli
from support import media_audio
from support import media_video
from jobs.datasets.ingest import ingest_folder
from jobs.nightly.manifest import current_snapshot, read_ledger
from jobs.nightly.tables import SUMMARY_FIELDS
from jobs.runs.dispatch import run_spec
from jobs.spec.load import load_spec, parse_spec
from jobs.storage.objects import exists, list_objects, parse_uri, read_bytes, s3_client, write_bytes
from support.paths import ROOT

pytestmark = pytest.mark.integration
EXAMPLES = ROOT / "jobs" / "examples"
ARCHIVE = "s3://it-nightly/archive/"
MODELS = "s3://it-nightly/models/"
NIGHTS = ("2026-11-20", "2026-11-21", "2026-11-22")


def save_untrained_model(train_example: str, classes: list[str], uri: str, seed: int = 0,
                         model_id: str | None = None) -> str:
    """An exported model as a train job writes it (a version with digests, then LATEST),
    without the training: these tests are about accounting, not accuracy. Returns its id."""
    from jobs.models.task_config import task_config_for
    from support.models import export_untrained_model

    spec = load_spec(EXAMPLES / train_example)
    return export_untrained_model(uri, spec.task, spec.model.architecture, task_config_for(spec), classes,
                                  model_id or f"{spec.name}-untrained", seed).model_id


@pytest.fixture(scope="module")
def nightly_models(ray_driver):
    save_untrained_model("train-demo.yaml", ["circle", "square", "triangle"], MODELS + "images/")
    save_untrained_model("train-video.yaml", ["red-ball", "blue-box"], MODELS + "video/")
    save_untrained_model("train-audio.yaml", ["no", "yes"], MODELS + "audio/")
    return MODELS


def _nightly_spec(output: str, **extra) -> object:
    data = {
        "version": 1, "kind": "score", "name": "nightly-media", "input": ARCHIVE, "output": output,
        "incremental": True, "batch_size": 64,
        "routes": [{"media": "image", "model": MODELS + "images/"},
                   {"media": "video", "model": MODELS + "video/", "frames": {"every_seconds": 0.5}},
                   {"media": "audio", "model": MODELS + "audio/"}],
        **extra}
    return parse_spec(data, "nightly.yaml")


def _add_images(root: Path, start: int, count: int, seed: int = 0) -> None:
    for i in range(start, start + count):
        fmt = "PNG" if i % 3 else "JPEG"
        folder = root / "images" / f"batch-{i // 250:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img-{i:05d}.{'png' if fmt == 'PNG' else 'jpg'}").write_bytes(
            media.image_bytes(fmt, size=(12, 12), seed=seed * 100_000 + i))


def _sync(root: Path) -> None:
    """Upload the local archive folder (unchanged files are skipped by ingest)."""
    ingest_folder(root, ARCHIVE)


def _read_all(output: str, table: str):
    from jobs.storage.delta import open_table

    handle = open_table(parse_uri(output).as_prefix().join(table))
    return [] if handle is None else handle.to_pyarrow_table().to_pylist()


def _run_cli(cli: MediaJobsCli, args: list[str], **kwargs) -> subprocess.Popen:
    return cli.start(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                     **kwargs)


def _kill_when_scoring_has_staged_rows(proc: subprocess.Popen, output: str, run_date: str) -> None:
    scored = f"{output}_staging/run_date={run_date}/scored/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(o.uri.endswith(".parquet") for o in list_objects(scored)):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and anything it started in its group
            proc.wait()
            return
        time.sleep(0.1)
    pytest.fail(f"the run ended (or never staged rows) before it could be killed: {proc.communicate()[0]}")


def test_three_nights_with_a_killed_run_score_every_object_exactly_once(mediajobs_cli, nightly_models, tmp_path):
    output = "s3://it-nightly/scores/"
    root = tmp_path / "archive"
    _add_images(root, 0, 1800)
    (root / "video").mkdir()
    for i, kind in enumerate(["red-ball", "blue-box", "green-stripes"]):
        media_video.write_video(root / "video" / f"clip-{i}.mp4", kind, seconds=2, fps=8, size=(48, 36), seed=i)
    (root / "audio").mkdir()
    for i in range(3):
        (root / "audio" / f"tone-{i}.wav").write_bytes(media_audio.tone_wav_bytes(300 + 200 * i, seconds=1.5))
    (root / "bad").mkdir()
    (root / "bad" / "corrupt.jpg").write_bytes(media.corrupt_jpeg_bytes())
    (root / "bad" / "empty.png").write_bytes(b"")
    (root / "bad" / "truncated.wav").write_bytes(media_audio.truncated_wav_bytes())
    (root / "bad" / "not-a-video.mp4").write_bytes(b"plain text, not a video")
    (root / "docs").mkdir()
    (root / "docs" / "notes.txt").write_text("no route takes text")
    (root / "docs" / "README").write_text("no extension")
    _sync(root)

    # Night 1: everything is new.
    first = run_spec(_nightly_spec(output), run_date=NIGHTS[0])
    listed_1 = 1800 + 3 + 3 + 4 + 2
    assert (first.listed, first.scored + first.errors, first.skipped) == (listed_1, listed_1 - 2, 2)
    assert first.errors == 4, _read_all(output, "errors")

    # Night 2: 600 new images, 15 changed, 10 deleted; killed while scoring, then re-run.
    _add_images(root, 1800, 600)
    changed = sorted((root / "images").rglob("img-000[0-1]*"))[:15]
    for path in changed:
        path.write_bytes(media.image_bytes("PNG", size=(12, 12), seed=777 + changed.index(path)))
    _sync(root)
    deleted = [f"{ARCHIVE}images/batch-01/img-{i:05d}.{'png' if i % 3 else 'jpg'}" for i in range(300, 310)]
    for uri in deleted:
        location = parse_uri(uri)
        s3_client().delete_object(Bucket=location.bucket, Key=location.key)
    snapshot_before = current_snapshot(output)
    spec_file = tmp_path / "nightly.yaml"
    spec_file.write_text(json.dumps(json.loads(_nightly_spec(output).model_dump_json(exclude_none=True))))
    killed = _run_cli(mediajobs_cli, ["run", str(spec_file), "--run-date", NIGHTS[1]], start_new_session=True)
    _kill_when_scoring_has_staged_rows(killed, output, NIGHTS[1])
    # Nothing of the killed night is visible; the ledger is as it was.
    assert current_snapshot(output) == snapshot_before
    assert not [r for r in _read_all(output, "predictions") if r["run_date"] == NIGHTS[1]]
    rerun = _run_cli(mediajobs_cli, ["run", str(spec_file), "--run-date", NIGHTS[1]])
    log = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, log
    assert "finished by an earlier attempt" in log, log
    said = []
    again = run_spec(_nightly_spec(output), run_date=NIGHTS[1], echo=said.append)
    assert not again.committed and f"run date {NIGHTS[1]} was committed by run" in said[-1], said
    gone = {e.uri: e for e in read_ledger(current_snapshot(output)) if e.deleted_on}
    assert set(gone) == set(deleted) and {e.deleted_on for e in gone.values()} == {NIGHTS[1]}
    assert {e.run_date for e in gone.values()} == {NIGHTS[0]}  # where their rows are

    # Night 3: a few more of each, and half of the deleted objects back as they were.
    _add_images(root, 2400, 200)
    media_video.write_video(root / "video" / "clip-3.mp4", "blue-box", seconds=2, fps=8, size=(48, 36), seed=9)
    for uri in deleted[5:]:
        (root / uri[len(ARCHIVE):]).unlink()
    _sync(root)
    third = run_spec(_nightly_spec(output), run_date=NIGHTS[2])
    assert third.scored + third.errors == 201 and third.deleted == 0

    # Exactly once: each version (uri, etag) of each object is in exactly one table row
    # over all nights; the archive as it is now is covered in full.
    predictions, errors = _read_all(output, "predictions"), _read_all(output, "errors")
    skipped = _read_all(output, "skipped")
    versions = Counter((r["uri"], r["etag"]) for r in predictions + errors + skipped)
    assert max(versions.values()) == 1, [v for v, n in versions.items() if n > 1][:5]
    now = {(o.uri, o.etag) for o in list_objects(ARCHIVE)}
    assert now <= set(versions), sorted(now - set(versions))[:5]
    assert len(versions) == len(now) + 15 + 5  # plus the old versions of changed and still-deleted objects
    # The ledger knows every object once; the restored ones are listed again.
    ledger = list(read_ledger(current_snapshot(output)))
    assert len({e.uri for e in ledger}) == len(ledger) == len(now) + 5
    assert {e.uri for e in ledger if e.deleted_on} == set(deleted[5:])
    # Each night's summary matches its tables.
    for night in NIGHTS:
        rows = {name: [r for r in _read_all(output, name) if r["run_date"] == night]
                for name in ("predictions", "errors", "skipped", "frames", "windows")}
        run_id = rows["predictions"][0]["run_id"]
        summary = json.loads(read_bytes(f"{output}runs/{run_id}/summary.json"))
        assert summary["run_date"] == night and list(summary) == list(SUMMARY_FIELDS)
        assert summary["tables"] == {name: len(found) for name, found in rows.items()}
        per_media = Counter(r["modality"] for r in rows["predictions"])
        assert {m: c["predicted"] for m, c in summary["counts"].items() if c["predicted"]} == dict(per_media)
        assert exists(f"{output}runs/{run_id}/report.html")
    night_2 = json.loads(read_bytes(f"{output}runs/{[r for r in predictions if r['run_date'] == NIGHTS[1]][0]['run_id']}"
                                    "/summary.json"))
    assert night_2["decisions"]["new"] == 600 and night_2["decisions"]["changed"] == 15
    assert night_2["decisions"]["deleted"] == 10 and night_2["resumed"] > 0
    night_3 = json.loads(read_bytes(third.summary_uri))
    assert night_3["decisions"]["restored"] == 5 and night_3["decisions"]["new"] == 201
    # The tables read with DuckDB too, through the Arrow dataset of the table's latest version
    # (DuckDB's own delta extension downloads itself at first use, and tests download nothing;
    # the README shows both ways), and each date is one commit of the table's history.
    import duckdb

    from jobs.storage.delta import open_table

    table = open_table(parse_uri(output).as_prefix().join("predictions"))
    dataset = table.to_pyarrow_dataset()  # noqa: F841 - DuckDB finds it by name
    counted = duckdb.connect().execute(
        "SELECT run_date, count(*), count(DISTINCT uri) FROM dataset GROUP BY run_date ORDER BY run_date").fetchall()
    writes = [h for h in table.history() if h["operation"] == "WRITE"]
    assert len(writes) == len({r["run_date"] for r in predictions}) == len(NIGHTS)
    assert {str(d): n for d, n, _ in counted} == dict(Counter(r["run_date"] for r in predictions))
    assert all(n == distinct for _, n, distinct in counted)


def test_error_budget_publish_lease_and_run_dates(mediajobs_cli, nightly_models, tmp_path, monkeypatch):
    """Over the budget: committed anyway, exit 1 with a summary; stopped after the commit
    point: published by the next run; a run while another holds the lease: refused, exit 3;
    a date before the last committed one: exit 2; the report re-rendered from the CLI."""
    import jobs.runs.nightly as nightly
    from jobs.errors import UsageError
    from jobs.nightly.manifest import snapshot_index
    from jobs.storage.lease import LockHeldError, acquire_lease, release_lease

    archive, output = "s3://it-nightly/small/", "s3://it-nightly/small-scores/"
    for i in range(3):
        write_bytes(f"{archive}ok-{i}.png", media.image_bytes("PNG", size=(12, 12), seed=i))
    write_bytes(f"{archive}broken.jpg", media.corrupt_jpeg_bytes())
    spec_file = tmp_path / "small.yaml"
    spec = {"version": 1, "kind": "score", "name": "small-nightly", "input": archive, "output": output,
            "incremental": True, "max_error_rate": 0.1, "routes": [{"media": "image", "model": MODELS + "images/"}]}
    spec_file.write_text(json.dumps(spec))

    over = _run_cli(mediajobs_cli, ["run", str(spec_file), "--run-date", "2026-11-20"])
    log = over.communicate(timeout=300)[0]
    assert over.returncode == 1, log
    assert "error budget exceeded: 1 of 4 scored objects failed (25.0% > max_error_rate 10.0%)" in log, log
    summary = json.loads(read_bytes(log.split("summary:", 1)[1].split()[0]))
    assert (summary["error_budget_exceeded"], summary["tables"]["predictions"], summary["tables"]["errors"]) == (
        True, 3, 1)
    assert list(summary) == list(SUMMARY_FIELDS)
    assert len(_read_all(output, "predictions")) == 3  # committed all the same

    # Stopped right after the commit point, before publishing: committed, nothing visible;
    # the next run publishes it first.
    write_bytes(f"{archive}ok-3.png", media.image_bytes("PNG", size=(12, 12), seed=3))

    class Stopped(Exception):
        pass

    def stopped(*args):
        raise Stopped()

    monkeypatch.setattr(nightly, "publish_committed", stopped)
    with pytest.raises(Stopped):
        run_spec(parse_spec(spec, "small.yaml"), run_date="2026-11-21")
    monkeypatch.undo()
    assert "2026-11-21" in snapshot_index(current_snapshot(output))["committed"]
    assert len(_read_all(output, "predictions")) == 3

    lease = acquire_lease(output, "someone-else", ttl_seconds=60)
    try:
        with pytest.raises(LockHeldError, match="another run \\(someone-else on ") as held:
            run_spec(parse_spec(spec, "small.yaml"), run_date="2026-11-21")
        assert held.value.exit_code == 3
    finally:
        release_lease(lease)

    said = []
    run_spec(parse_spec(spec, "small.yaml"), run_date="2026-11-21", echo=said.append)
    assert any("not published in full" in line for line in said) and "nothing to do" in said[-1], said
    assert Counter(r["run_date"] for r in _read_all(output, "predictions")) == {"2026-11-20": 3, "2026-11-21": 1}

    with pytest.raises(UsageError, match="before the last committed run date 2026-11-21"):
        run_spec(parse_spec(spec, "small.yaml"), run_date="2026-11-19")

    shown = _run_cli(mediajobs_cli, ["report", output, "--run-date", "2026-11-20"])
    log = shown.communicate(timeout=300)[0]
    assert shown.returncode == 0 and "report of 2026-11-20:" in log, log
    page = read_bytes(log.split("report of 2026-11-20:", 1)[1].split()[0]).decode()
    assert page.count("data:image/png;base64,") >= 3 and "broken.jpg" in page  # charts, thumbnails, errors
