"""Drift across nights on the real stack: an archive of shapes whose class mix shifts on the
third night, scored nightly by the session's trained shapes classifier. The second night
(the same mix) stays stable; the third (nearly all circles) is marked in its summary, its
morning report, the head's metrics and the Pushgateway push."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from support.shared_models import SHAPES_MODEL

pytestmark = pytest.mark.integration
ARCHIVE, OUTPUT = "s3://it-drift/archive/", "s3://it-drift/scores/"
NIGHTS = ("2026-11-20", "2026-11-21", "2026-11-22")
SPEC_NAME = "nightly-shapes"


@pytest.fixture
def pushgateway():
    """A Pushgateway's front door on this machine: keeps the path and body of every PUT."""
    pushes: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 - http.server's naming
            pushes.append((self.path, self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", pushes
    server.shutdown()


def _night(root: Path, night: int, shapes: Path) -> None:
    """Add this night's 180 images to the archive folder: 60 of each shape on nights 1 and 2,
    168 circles and 6 of each other shape on night 3. (PSI needs full nights: two nights of
    the same scores differ by about 10 / objects-per-night by chance, docs/operating.md.)"""
    plan = {"circle": 60, "square": 60, "triangle": 60} if night < 3 else {"circle": 168, "square": 6, "triangle": 6}
    for shape, count in plan.items():
        used = sum(1 for _ in root.glob(f"night-*/{shape}_*"))  # no image is added twice
        for path in sorted((shapes / "test" / shape).iterdir())[used:used + count]:
            target = root / f"night-{night}" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def test_a_class_mix_that_shifts_on_the_third_night_is_marked_as_drift(shapes_two_workers, local_stack, tmp_path,
                                                                       pushgateway, monkeypatch):
    from support.metrics import scrape_until, series_sum

    from jobs.datasets.ingest import ingest_folder
    from jobs.datasets.synthetic import write_shapes_dataset
    from jobs.runs.dispatch import run_spec
    from jobs.spec.load import parse_spec
    from jobs.storage.checks import ensure_bucket
    from jobs.storage.objects import read_bytes

    url, pushes = pushgateway
    ensure_bucket(ARCHIVE)
    monkeypatch.setenv("MEDIAJOBS_PUSHGATEWAY", url)
    shapes, archive = tmp_path / "shapes", tmp_path / "archive"
    write_shapes_dataset(shapes, per_class_train=0, per_class_test=60 + 60 + 168, seed=11)
    spec = parse_spec({"version": 1, "kind": "score", "name": SPEC_NAME, "task": "image-classifier",
                       "model": SHAPES_MODEL, "input": ARCHIVE, "output": OUTPUT, "incremental": True,
                       "drift": {"max_psi": 0.25, "nights": 7}, "resources": {"concurrency": 1}}, "nightly.yaml")
    summaries = []
    for night, date in enumerate(NIGHTS, start=1):
        _night(archive, night, shapes)
        ingest_folder(archive, ARCHIVE)
        result = run_spec(spec, run_date=date, echo=lambda line: None)
        summaries.append(json.loads(read_bytes(result.summary_uri)))

    first, second, third = (s["drift"] for s in summaries)
    assert first["nights"] == [] and not first["exceeded"]  # nothing to compare with
    assert second["nights"] == [NIGHTS[0]] and not second["exceeded"], second
    assert third["nights"] == list(NIGHTS[:2]) and third["exceeded"], third
    assert third["modalities"]["image"]["class_mix"] > 0.25 > second["modalities"]["image"]["class_mix"]
    mix = summaries[2]["class_mix"]["image"]
    assert mix.get("circle", 0) > 0.7 * sum(mix.values()), mix  # the model saw the shift

    report = read_bytes(summaries[2]["output"].rstrip("/") + f"/runs/{summaries[2]['run_id']}/report.html").decode()
    assert '<span class="badge exceeded">DRIFT</span>' in report
    assert 'id="across-nights"' in report and all(date in report for date in NIGHTS)
    second_report = read_bytes(OUTPUT + f"runs/{summaries[1]['run_id']}/report.html").decode()
    assert '<span class="badge ok">stable</span>' in second_report

    # The night's figures reached Prometheus both ways: the head's endpoint and the push.
    assert len(pushes) == 3 and all(path == f"/metrics/job/mediajobs_nightly/spec/{SPEC_NAME}" for path, _ in pushes)
    assert "mediajobs_nightly_drift_exceeded 1.0" in pushes[2][1]
    assert "mediajobs_nightly_drift_exceeded 0.0" in pushes[1][1]
    labels = {"spec": SPEC_NAME}
    found = scrape_until(local_stack.metrics_url, lambda samples: series_sum(
        samples, "ray_mediajobs_nightly_drift_exceeded", labels) == 1)
    assert series_sum(found, "ray_mediajobs_nightly_drift_exceeded", labels) == 1
    assert series_sum(found, "ray_mediajobs_nightly_objects", labels) == 180
