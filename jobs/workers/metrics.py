"""What a job tells Prometheus: counters, histograms and gauges through Ray's metrics system.

Every Ray process (the driver, Data actors, Train workers) records through
`ray.util.metrics`; the node's metrics agent exposes them on the head's metrics export
port (`mediajobs local up` prints it; KubeRay's PodMonitor in `cluster/monitoring/` scrapes
it). Ray prefixes each name with `ray_` and adds labels of its own (`WorkerId`,
`SessionName`, ...): one series per process, so dashboards `sum by` our labels. A counter
is `..._total` there (`ray_mediajobs_objects_total`).

The names and labels here are the contract of `cluster/monitoring/` (the Grafana
dashboard and the alert rules; a unit test checks that they use only these). Recording
never fails a job: a process without Ray (a unit test, `mediajobs predict`) records
nothing.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

RAY_PREFIX = "ray_"  # what Ray's metrics agent puts before each name


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Literal["counter", "histogram", "gauge"]
    description: str
    labels: tuple[str, ...]
    boundaries: tuple[float, ...] = ()

    @property
    def exposed(self) -> str:
        """The name a Prometheus scrape of a Ray node shows (a histogram adds `_bucket`, `_sum`, `_count`)."""
        return RAY_PREFIX + self.name + ("_total" if self.kind == "counter" else "")


_SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0)

# Objects a run committed: `outcome` scored | failed | partial | skipped; `stage` the errors
# table's stage of a failed object ("none" otherwise); `kind` score | nightly.
OBJECTS = Metric("mediajobs_objects", "counter", "Objects a committed run accounted for, by outcome",
                 ("kind", "spec", "modality", "outcome", "stage"))
OBJECT_FETCH_SECONDS = Metric("mediajobs_fetch_seconds", "histogram",
                              "Seconds to fetch one object from the store", ("task",), _SECONDS)
OBJECT_DECODE_SECONDS = Metric("mediajobs_decode_seconds", "histogram",
                               "Seconds to decode one fetched object", ("task",), _SECONDS)
BLOCK_MODEL_SECONDS = Metric("mediajobs_model_seconds", "histogram",
                             "Seconds of one block's model calls (all its examples)", ("task",), _SECONDS)
EXAMPLES_SCORED = Metric("mediajobs_examples_scored", "counter", "Examples (images, frames, windows) through the model",
                         ("task",))
ROWS_PER_SECOND = Metric("mediajobs_rows_per_second", "gauge",
                         "A run's staged rows per second once its first block was scored", ("kind", "spec"))
RUN_SECONDS = Metric("mediajobs_run_seconds", "gauge", "A committed run's seconds from start to summary",
                     ("kind", "spec"))
EPOCH_SECONDS = Metric("mediajobs_train_epoch_seconds", "gauge", "Seconds of the last training epoch (rank 0)",
                       ("task", "spec"))
TRAIN_LOSS = Metric("mediajobs_train_loss", "gauge", "Training loss of the last epoch (rank 0)", ("task", "spec"))
EPOCHS = Metric("mediajobs_train_epochs", "counter", "Training epochs finished (rank 0)", ("task", "spec"))
# A nightly run's figures (also pushed to a Pushgateway: jobs.runs.pushgateway).
NIGHTLY_LAST_COMMIT = Metric("mediajobs_nightly_last_commit_timestamp_seconds", "gauge",
                             "When the spec's last nightly run date was committed (Unix seconds)", ("spec",))
NIGHTLY_OBJECTS = Metric("mediajobs_nightly_objects", "gauge", "Objects the last committed run date scored or failed",
                         ("spec",))
NIGHTLY_ERROR_RATIO = Metric("mediajobs_nightly_error_ratio", "gauge",
                             "Failed objects over scored + failed, last committed run date", ("spec",))
NIGHTLY_OBJECTS_PER_SECOND = Metric("mediajobs_nightly_objects_per_second", "gauge",
                                    "Objects per second of the last committed run date", ("spec",))
NIGHTLY_DRIFT_PSI = Metric("mediajobs_nightly_drift_psi", "gauge",
                           "Largest PSI of the class mix or scores against the trailing nights (jobs.nightly.drift)",
                           ("spec",))
NIGHTLY_DRIFT_EXCEEDED = Metric("mediajobs_nightly_drift_exceeded", "gauge",
                                "1 when the last committed night drifted past the spec's drift.max_psi", ("spec",))

METRICS = (OBJECTS, OBJECT_FETCH_SECONDS, OBJECT_DECODE_SECONDS, BLOCK_MODEL_SECONDS, EXAMPLES_SCORED,
           ROWS_PER_SECOND, RUN_SECONDS, EPOCH_SECONDS, TRAIN_LOSS, EPOCHS, NIGHTLY_LAST_COMMIT, NIGHTLY_OBJECTS,
           NIGHTLY_ERROR_RATIO, NIGHTLY_OBJECTS_PER_SECOND, NIGHTLY_DRIFT_PSI, NIGHTLY_DRIFT_EXCEEDED)


@functools.cache
def _instrument(metric: Metric) -> Any:
    """This process's Ray metric object (one per name and process, as Ray wants)."""
    from ray.util import metrics

    if metric.kind == "counter":
        return metrics.Counter(metric.name, description=metric.description, tag_keys=metric.labels)
    if metric.kind == "gauge":
        return metrics.Gauge(metric.name, description=metric.description, tag_keys=metric.labels)
    return metrics.Histogram(metric.name, description=metric.description, boundaries=list(metric.boundaries),
                             tag_keys=metric.labels)


def _recording() -> bool:
    import sys

    ray = sys.modules.get("ray")  # a process that never imported Ray has no metrics agent to tell
    return ray is not None and ray.is_initialized()


def record(metric: Metric, value: float, **labels: str) -> None:
    """Add `value` to a counter, set a gauge, or observe a histogram; never raises."""
    if not _recording():
        return
    try:
        tags = {name: str(labels.get(name) or "none") for name in metric.labels}
        instrument = _instrument(metric)
        if metric.kind == "counter":
            if value > 0:  # Ray refuses a zero increment
                instrument.inc(value, tags=tags)
        elif metric.kind == "gauge":
            instrument.set(value, tags=tags)
        else:
            instrument.observe(value, tags=tags)
    except Exception as exc:  # noqa: BLE001 - a metric is never worth a failed job
        log.debug("metric %s not recorded: %s", metric.name, exc)


def observe_all(metric: Metric, values: list[float], **labels: str) -> None:
    """One histogram observation per value (a block's objects)."""
    for value in values:
        record(metric, value, **labels)
