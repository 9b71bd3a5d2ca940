"""The morning report (jobs.reports.report) on a small nightly run written to local folders: no Ray, no S3."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import jobs.reports.thumbnails as thumbnails_module
from support import media
from support import media_video
from jobs.nightly.tables import SCHEMAS as CONTRACT
from jobs.reports.report import Thumbnail, lowest_confidence_thumbnails, read_run_tables, render_report, write_report

RUN_DATE = "2026-11-21"
RUN_ID = "run-20261121-abc"
PNG_TAG = '<img src="data:image/png;base64,'
SCHEMAS = {name: schema() for name, schema in CONTRACT.items()}  # the tables as a nightly run publishes them
SCRIPT_ERROR = "decode failed: <script>alert('x')</script>"


def make_table(name: str, rows: list[dict]) -> pa.Table:
    """A table of the report's contract; columns a row leaves out get plausible defaults."""
    schema = SCHEMAS[name]
    defaults = {"etag": "e", "size": 100, "route": "default", "model_id": "m-1", "run_id": RUN_ID,
                "top_labels": ["a", "b"], "top_scores": [0.5, 0.2], "examples": 1, "seconds": 0.1,
                "warning": None, "reason": "unchanged", "label": "cat", "score": 0.5}
    return pa.Table.from_pylist([{**{f: defaults.get(f) for f in schema.names}, **row} for row in rows], schema)


def write_partition(out: Path, name: str, table: pa.Table) -> None:
    folder = out / name / f"run_date={RUN_DATE}"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-00000.parquet")


@pytest.fixture
def run(tmp_path: Path) -> dict:
    """Media files and the five tables of one run under tmp_path/out, plus its summary."""
    media_dir = tmp_path / "media"
    media_dir.mkdir()
    (media_dir / "calm.jpg").write_bytes(media.image_bytes("JPEG", (60, 40), seed=1))
    (media_dir / "unsure.png").write_bytes(media.image_bytes("PNG", (300, 200), seed=2))
    (media_dir / "doubtful.jpg").write_bytes(media.image_bytes("JPEG", (40, 40), seed=3))
    (media_dir / "corrupt.jpg").write_bytes(media.corrupt_jpeg_bytes())
    video = media_video.write_video(media_dir / "clip.mp4", "red-ball", seconds=1, fps=10, size=(32, 32))
    m = {name: str(media_dir / name) for name in ("calm.jpg", "unsure.png", "doubtful.jpg", "corrupt.jpg")}
    missing = str(media_dir / "deleted-since.jpg")
    tables = {
        "predictions": make_table("predictions", [
            {"uri": m["calm.jpg"], "modality": "image", "label": "cat", "score": 0.95, "seconds": 0.2},
            {"uri": m["doubtful.jpg"], "modality": "image", "label": "dog", "score": 0.30, "seconds": 0.3},
            {"uri": m["unsure.png"], "modality": "image", "label": "dog", "score": 0.05, "seconds": 0.4},
            # Both became unreadable after scoring: the report must skip them, not fail.
            {"uri": m["corrupt.jpg"], "modality": "image", "label": "cat", "score": 0.01, "seconds": 0.1},
            {"uri": missing, "modality": "image", "label": "cat", "score": 0.02, "seconds": 0.1},
            {"uri": str(video), "modality": "video", "label": "red-ball", "score": 0.6, "examples": 3,
             "seconds": 2.5},
            {"uri": "/media/song.wav", "modality": "audio", "label": "$x^{$", "score": 0.7, "examples": 4,
             "seconds": 1.5},
        ]),
        "frames": make_table("frames", [
            {"uri": str(video), "frame_index": 2, "timestamp_s": 0.2, "label": "red-ball", "score": 0.10},
            {"uri": str(video), "frame_index": 8, "timestamp_s": 0.8, "label": "blue-box", "score": 0.40},
            {"uri": str(video), "frame_index": 5, "timestamp_s": 0.5, "label": "red-ball", "score": 0.90},
        ]),
        "windows": make_table("windows", [
            {"uri": "/media/song.wav", "window_start_s": float(i), "window_end_s": i + 1.0} for i in range(4)]),
        "errors": make_table("errors", [
            {"uri": "/media/<img src=x onerror=alert(1)>.jpg", "modality": "image", "stage": "decode",
             "error": SCRIPT_ERROR, "seconds": 9.0},
            {"uri": "/media/broken.mp4", "modality": "video", "stage": "fetch", "error": "timed out",
             "seconds": 0.5},
        ]),
        "skipped": make_table("skipped", [{"uri": f"/media/old-{i}.jpg"} for i in range(2)]),
    }
    out = tmp_path / "out"
    for name, table in tables.items():
        write_partition(out, name, table)
    summary = {
        "run_id": RUN_ID, "run_date": RUN_DATE, "spec_name": "nightly-media-scoring", "input": "/media/",
        "output": str(out), "started_at": "2026-11-21T02:00:00+00:00", "finished_at": "2026-11-21T02:10:05+00:00",
        "seconds": 605.0, "objects_per_s": 1234.5, "listed": 11,
        "counts": {"image": {"predicted": 5, "errors": 1}, "video": {"predicted": 1, "errors": 1},
                   "audio": {"predicted": 1, "errors": 0}, "skipped": 2},
        "decisions": {"new": 7, "changed": 1, "other-model": 0, "retry": 1, "unchanged": 2, "deleted": 0},
        "model_ids": {"default": "m-1"}, "error_rate": 2 / 9, "max_error_rate": 0.05,
        "error_budget_exceeded": True, "tables": {name: t.num_rows for name, t in tables.items()},
    }
    return {"out": out, "tables": tables, "summary": summary, "video": str(video), "media": m}


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


# --- reading ----------------------------------------------------------------------------------


def test_read_run_tables_reads_each_partition_without_a_run_date_column(run):
    tables = read_run_tables(str(run["out"]), RUN_DATE)

    assert {name: t.num_rows for name, t in tables.items()} == {
        "predictions": 7, "frames": 3, "windows": 4, "errors": 2, "skipped": 2}
    assert tables["predictions"].schema.equals(SCHEMAS["predictions"])
    assert "run_date" not in tables["frames"].column_names


def test_read_run_tables_leaves_out_missing_tables_and_other_dates(tmp_path):
    write_partition(tmp_path, "predictions", make_table("predictions", [{"uri": "/a.jpg", "modality": "image"}]))
    (tmp_path / "errors" / "run_date=2026-11-20").mkdir(parents=True)  # another night only

    tables = read_run_tables(str(tmp_path), RUN_DATE)

    assert list(tables) == ["predictions"]
    assert read_run_tables(str(tmp_path), "2026-11-19") == {}


# --- thumbnails -------------------------------------------------------------------------------


def test_thumbnails_are_lowest_scores_first_with_video_frames_and_skip_unreadable_objects(run, monkeypatch):
    fetched = []
    real_read_bytes = thumbnails_module.read_bytes

    def counting_read_bytes(uri):  # a spy: the real local read, counted
        fetched.append(uri)
        return real_read_bytes(uri)

    monkeypatch.setattr(thumbnails_module, "read_bytes", counting_read_bytes)

    thumbnails = lowest_confidence_thumbnails(run["tables"], n=6, side=16)

    # The 6 lowest: corrupt 0.01, missing 0.02, unsure 0.05, frame 2 0.10, doubtful 0.30, frame 8 0.40.
    assert [(t.uri, t.detail) for t in thumbnails] == [
        (run["media"]["unsure.png"], "image"), (run["video"], "frame 2 at 0.2 s"),
        (run["media"]["doubtful.jpg"], "image"), (run["video"], "frame 8 at 0.8 s")]
    assert [t.score for t in thumbnails] == pytest.approx([0.05, 0.10, 0.30, 0.40])
    assert [t.label for t in thumbnails] == ["dog", "red-ball", "dog", "blue-box"]
    assert fetched.count(run["video"]) == 1
    for thumbnail in thumbnails:
        with Image.open(io.BytesIO(thumbnail.png)) as image:
            assert image.format == "PNG" and image.mode == "RGB" and max(image.size) <= 16
    with Image.open(io.BytesIO(thumbnails[0].png)) as image:
        assert image.size == (16, 11)  # 300x200 shrunk to fit 16 pixels, aspect ratio kept


def test_video_thumbnails_show_the_scored_frame(run):
    thumbnails = [t for t in lowest_confidence_thumbnails(run["tables"], n=10, side=32) if t.detail != "image"]
    capture = cv2.VideoCapture(run["video"])
    frames = []
    for _ in range(10):
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.int16))
    capture.release()

    assert [t.detail.split(" at ")[0] for t in thumbnails] == ["frame 2", "frame 8", "frame 5"]
    for thumbnail, index in zip(thumbnails, (2, 8, 5)):
        with Image.open(io.BytesIO(thumbnail.png)) as image:
            pixels = np.asarray(image, dtype=np.int16)
        differences = [np.abs(pixels - frame).mean() for frame in frames]
        assert int(np.argmin(differences)) == index


def test_thumbnails_without_images_or_frames_are_empty(tmp_path):
    audio_only = {"predictions": make_table("predictions", [{"uri": "/x.wav", "modality": "audio"}])}

    assert lowest_confidence_thumbnails(audio_only) == []
    assert lowest_confidence_thumbnails({}) == []


# --- rendering --------------------------------------------------------------------------------


def test_render_report_shows_the_run(run):
    tables = read_run_tables(str(run["out"]), RUN_DATE)
    thumbnails = lowest_confidence_thumbnails(tables, n=6, side=16)

    page = render_report(run["summary"], tables, thumbnails)

    assert page.startswith("<!DOCTYPE html>")
    assert "nightly-media-scoring" in page and RUN_ID in page and RUN_DATE in page
    assert "10m 05s" in page and "1,234.50 objects/s" in page and "22.22%" in page and "5.00%" in page
    assert '<span class="badge exceeded">EXCEEDED</span>' in page
    for modality in ("image", "video", "audio"):
        assert "objects scored" in section(page, f"modality-{modality}")
    assert "(windows: 4)" in section(page, "modality-audio") and "(frames: 3)" in section(page, "modality-video")
    # Two charts per modality with predictions, then one picture per thumbnail.
    assert page.count(PNG_TAG) == 3 * 2 + len(thumbnails) == 10
    with Image.open(io.BytesIO(embedded_pngs(page)[0])) as chart:
        chart.load()
        assert chart.format == "PNG" and chart.width > 100 and chart.height > 50


def test_render_report_escapes_untrusted_strings(run):
    page = render_report(run["summary"], run["tables"], [])

    errors = section(page, "errors")
    assert "decode failed: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in errors
    assert "/media/&lt;img src=x onerror=alert(1)&gt;.jpg" in errors
    assert "timed out" in errors and "/media/broken.mp4" in errors
    assert "<script" not in page and "<img src=x" not in page


def test_render_report_lists_the_slowest_objects_scored_or_failed(run):
    page = render_report(run["summary"], run["tables"], [])

    slowest = section(page, "slowest")
    order = [slowest.index(uri) for uri in ("onerror", run["video"], "/media/song.wav", "/media/broken.mp4")]
    assert order == sorted(order)
    assert slowest.count("<tr>") == 1 + 9  # header + every timed object (fewer than 20)


def test_render_report_counts_and_decisions(run):
    page = render_report(run["summary"], run["tables"], [])

    counts = section(page, "counts")
    assert "<td>image</td><td class=\"n\">5</td><td class=\"n\">1</td>" in counts
    assert "skipped: 2 objects" in counts
    assert "<th>other-model</th>" in counts and "<td class=\"n\">7</td>" in counts


def test_render_report_with_no_tables_says_none(run):
    summary = {**run["summary"], "error_budget_exceeded": False, "error_rate": 0.0}
    empty = {name: schema.empty_table() for name, schema in SCHEMAS.items()}

    for tables in ({}, empty):
        page = render_report(summary, tables, [])

        assert '<span class="badge ok">OK</span>' in page and "EXCEEDED" not in page
        assert PNG_TAG not in page
        assert "none: no predictions" in section(page, "modality-video")
        for anchor in ("slowest", "errors", "thumbnails"):
            assert '<p class="none">none</p>' in section(page, anchor)


def test_render_report_caps_the_error_table(run):
    errors = make_table("errors", [{"uri": f"/media/bad-{i:03d}.jpg", "modality": "image", "stage": "decode",
                                    "error": "not an image"} for i in range(250)])

    page = render_report(run["summary"], {"errors": errors}, [])

    table = section(page, "errors")
    assert table.count("<tr>") == 1 + 200
    assert "bad-199.jpg" in table and "bad-200.jpg" not in table
    assert f"and 50 more errors, in {run['out']}/errors/run_date={RUN_DATE}/" in table


def test_render_report_captions_thumbnails(run):
    png = media.image_bytes("PNG", (8, 8))
    thumbnails = [Thumbnail("/media/a&b.jpg", "<cat>", 0.0421, png, "frame 3 at 1.5 s")]

    grid = section(render_report(run["summary"], {}, thumbnails), "thumbnails")

    assert grid.count(PNG_TAG) == 1
    assert "<b>&lt;cat&gt;</b> 0.042" in grid and "frame 3 at 1.5 s" in grid and "/media/a&amp;b.jpg" in grid


# --- writing ----------------------------------------------------------------------------------


def test_write_report_writes_the_page_next_to_the_summary(run):
    tables = read_run_tables(str(run["out"]), RUN_DATE)

    uri = write_report(str(run["out"]), run["summary"], tables)

    assert uri == str(run["out"] / "runs" / RUN_ID / "report.html")
    page = Path(uri).read_text(encoding="utf-8")
    assert "nightly-media-scoring" in page
    # 6 charts and the 6 readable of the 8 images and frames (the corrupt and missing ones are left out).
    assert page.count(PNG_TAG) == 6 + 6
