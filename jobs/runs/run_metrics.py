"""A committed run's figures as metrics: through Ray's metrics system (the head's metrics
endpoint), and for a nightly run also to a Prometheus Pushgateway when one is configured.

Recorded by the driver from the committed counts, so the counters agree with the tables
(workers record their own timings: `jobs.workers.decoding`, `jobs.runs.score`). A
Pushgateway outlives the Ray cluster, so "no commit in 26 h" can alert even when the
cluster that should have run the night is gone; set `MEDIAJOBS_PUSHGATEWAY` to its URL
(e.g. `http://pushgateway.monitoring:9091`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from jobs.nightly.drift import largest_psi
from jobs.workers.metrics import (
    NIGHTLY_DRIFT_EXCEEDED,
    NIGHTLY_DRIFT_PSI,
    NIGHTLY_ERROR_RATIO,
    NIGHTLY_LAST_COMMIT,
    NIGHTLY_OBJECTS,
    NIGHTLY_OBJECTS_PER_SECOND,
    OBJECTS,
    ROWS_PER_SECOND,
    RUN_SECONDS,
    record,
)

PUSHGATEWAY_ENV = "MEDIAJOBS_PUSHGATEWAY"
PUSH_JOB = "mediajobs_nightly"  # the Pushgateway's `job` label of every push
# What a committed night reports (Ray gauges and the Pushgateway alike).
NIGHT_FIGURES = (NIGHTLY_LAST_COMMIT, NIGHTLY_OBJECTS, NIGHTLY_ERROR_RATIO, NIGHTLY_OBJECTS_PER_SECOND,
                 NIGHTLY_DRIFT_PSI, NIGHTLY_DRIFT_EXCEEDED)


def record_objects(kind: str, spec: str, modality: str, *, scored: int, partial: int = 0, skipped: int = 0,
                   failed_stages: Mapping[str, int] | None = None) -> None:
    """One run's objects by outcome: scored (whole), partial (scored, with an errors row),
    failed (by stage), skipped (no route)."""
    common = {"kind": kind, "spec": spec, "modality": modality}
    record(OBJECTS, scored - partial, outcome="scored", **common)
    record(OBJECTS, partial, outcome="partial", **common)
    record(OBJECTS, skipped, outcome="skipped", **common)
    for stage, n in (failed_stages or {}).items():
        record(OBJECTS, n, outcome="failed", stage=stage, **common)


def record_pace(kind: str, spec: str, rows_per_s: float, seconds: float) -> None:
    record(ROWS_PER_SECOND, rows_per_s, kind=kind, spec=spec)
    record(RUN_SECONDS, seconds, kind=kind, spec=spec)


def nightly_figures(summary: Mapping) -> dict[str, float]:
    """A committed nightly run's alerting figures, from its summary.json."""
    scored = sum(counts.get("predicted", 0) for counts in summary["counts"].values())
    errors = sum(counts.get("errors", 0) for counts in summary["counts"].values())
    drift = summary.get("drift") or {}
    return {NIGHTLY_LAST_COMMIT.name: time.time(), NIGHTLY_OBJECTS.name: scored + errors,
            NIGHTLY_ERROR_RATIO.name: float(summary["error_rate"]),
            NIGHTLY_OBJECTS_PER_SECOND.name: float(summary["objects_per_s"]),
            NIGHTLY_DRIFT_PSI.name: largest_psi(drift), NIGHTLY_DRIFT_EXCEEDED.name: float(bool(drift.get("exceeded")))}


def record_night(spec: str, figures: Mapping[str, float], echo: Callable[[str], None]) -> None:
    """The figures as Ray gauges, and pushed to the Pushgateway when `MEDIAJOBS_PUSHGATEWAY` is set."""
    for metric in NIGHT_FIGURES:
        record(metric, figures[metric.name], spec=spec)
    url = os.environ.get(PUSHGATEWAY_ENV)
    if url:
        try:
            push_figures(url, spec, figures)
        except OSError as exc:  # the run committed: a missed push is the alert's business, not the run's
            echo(f"note: the nightly figures were not pushed to {url}: {exc}")


def push_figures(url: str, spec: str, figures: Mapping[str, float]) -> None:
    """PUT the figures as gauges to a Pushgateway, grouped by `spec` (each push replaces that
    spec's group, so its gauges are the last committed night's)."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    metrics = {m.name: m for m in NIGHT_FIGURES}
    for name, value in figures.items():
        Gauge(name, metrics[name].description, registry=registry).set(value)
    push_to_gateway(url, job=PUSH_JOB, grouping_key={"spec": spec}, registry=registry, timeout=10)
