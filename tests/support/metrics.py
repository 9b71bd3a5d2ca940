"""Reading a Ray node's Prometheus endpoint in tests: scrape it, sum series by our labels."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample on the endpoint: name -> [(labels, value)]."""
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(url, timeout=10).read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def series_sum(samples: dict, name: str, labels: dict[str, str]) -> float:
    """The sum over the series of `name` whose labels include `labels` (Ray keeps one series
    per process: WorkerId, SessionName, ...)."""
    return sum(value for found, value in samples.get(name, []) if labels.items() <= found.items())


def scrape_until(url: str, ready: Callable[[dict], bool], timeout: float = 60.0) -> dict:
    """Scrape until `ready(samples)`: a process reports its metrics to the node's agent every
    few seconds (the driver of an in-process run keeps running). The last scrape on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(1.0)
