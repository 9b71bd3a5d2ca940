"""A committed run's figures as metrics: the nightly figures, the Pushgateway push (to a
small HTTP server here that keeps what it was sent) and recording without Ray."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from jobs.runs.run_metrics import PUSH_JOB, PUSHGATEWAY_ENV, nightly_figures, push_figures, record_night
from jobs.workers.metrics import METRICS, OBJECTS, record

SUMMARY = {"counts": {"image": {"predicted": 90, "errors": 6}, "video": {"predicted": 3, "errors": 1}},
           "error_rate": 0.07, "objects_per_s": 12.5}


@pytest.fixture
def gateway():
    """A Pushgateway's front door: records (method, path, body) of each request."""
    received: list[tuple[str, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            received.append(("PUT", self.path, self.rfile.read(length).decode()))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_nightly_figures_add_up_every_modality():
    figures = nightly_figures(SUMMARY)
    assert figures["mediajobs_nightly_objects"] == 100
    assert figures["mediajobs_nightly_error_ratio"] == pytest.approx(0.07)
    assert figures["mediajobs_nightly_objects_per_second"] == 12.5
    assert figures["mediajobs_nightly_last_commit_timestamp_seconds"] > 1.7e9


def test_the_push_replaces_the_specs_group_with_its_gauges(gateway):
    from prometheus_client.parser import text_string_to_metric_families

    url, received = gateway
    push_figures(url, "nightly-archive", nightly_figures(SUMMARY))
    [(method, path, body)] = received
    assert (method, path) == ("PUT", f"/metrics/job/{PUSH_JOB}/spec/nightly-archive")
    values = {s.name: s.value for family in text_string_to_metric_families(body) for s in family.samples}
    assert values["mediajobs_nightly_objects"] == 100
    assert values["mediajobs_nightly_error_ratio"] == pytest.approx(0.07)
    assert {f.type for f in text_string_to_metric_families(body)} == {"gauge"}



def test_a_gateway_that_does_not_answer_is_a_note_not_a_failure(monkeypatch):
    monkeypatch.setenv(PUSHGATEWAY_ENV, "http://127.0.0.1:9")  # the discard port: nothing listens
    notes: list[str] = []
    record_night("nightly-archive", nightly_figures(SUMMARY), notes.append)
    assert len(notes) == 1 and notes[0].startswith("note: the nightly figures were not pushed to http://127.0.0.1:9")


def test_without_ray_recording_does_nothing():
    """A process without a Ray driver (a unit test, `mediajobs predict`) creates no Ray metric."""
    from jobs.workers import metrics

    metrics._instrument.cache_clear()
    record(OBJECTS, 3, job="score", spec="s", modality="image", outcome="scored", stage="none")
    assert metrics._instrument.cache_info().currsize == 0


def test_metric_names_are_unique_and_prometheus_shaped():
    import re

    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    for metric in METRICS:
        assert re.fullmatch(r"mediajobs_[a-z_]+", metric.name), metric.name
        assert not metric.name.endswith("_total"), f"{metric.name}: Ray adds _total to a counter itself"
        assert metric.kind != "histogram" or metric.boundaries, f"{metric.name}: a histogram needs boundaries"


def test_every_metric_is_in_the_operators_guide():
    from support.paths import ROOT

    guide = (ROOT / "docs" / "operating.md").read_text()
    for metric in METRICS:
        short = metric.exposed.replace("ray_mediajobs", "...")
        assert metric.exposed in guide or short in guide, f"docs/operating.md does not list {metric.exposed}"
