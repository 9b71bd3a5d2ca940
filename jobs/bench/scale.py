"""`mediajobs bench --scale`: a measured model of the nightly driver's cost per object.

A first night (every object new, so every object is scored) over N tiny images per size,
each in a fresh interpreter so that its peak RSS is the driver's alone. The run's
`events.jsonl` only splits started / scoring / committing / committed / finished, and its
"scoring" span also holds the commit sweep and the ledger snapshot; so the child also
clocks the driver's own steps from outside (wrapped, not replaced). Each phase is fitted
as `seconds = fixed + per_object * N` and extrapolated to sizes nobody waits for here.

    ensure_objects ─▶ s3://<bucket>/scale-v1/objects-N/ ─▶ measure_night:
      `python -m jobs.bench.scale --child` ─▶ {phases, events, seconds, CPU, peak RSS}
      ─▶ model_from_runs ─▶ fits, extrapolation, the first bottleneck
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VERSION = 1  # bump when the objects change
RUN_DATE = "2026-12-01"
TARGETS = (1_000_000, 10_000_000)
# In the driver's order; `scoring` is the one phase that a bigger cluster shortens.
PHASES = ("start", "listing", "decide", "pending", "scoring", "commit", "ledger", "publish", "report", "other")
SERIAL = tuple(p for p in PHASES if p != "scoring")
_note = functools.partial(print, file=sys.stderr)


def ensure_objects(bucket_uri: str, count: int, echo: Callable[[str], None] = print) -> str:
    """`count` 16x16 JPEGs under `<bucket>/scale-v1/objects-<count>/`, uploaded unless the
    `.complete.json` marker beside them says so; returns the prefix. 256 pictures are
    reused: the job's cost does not depend on the pixels, and the PUTs are the slow part."""
    import cv2
    import numpy as np

    from jobs.storage.checks import ensure_bucket
    from jobs.storage.objects import exists, parse_uri, s3_client, write_bytes

    prefix = parse_uri(bucket_uri).as_prefix().join(f"scale-v{VERSION}", f"objects-{count}").as_prefix()
    marker = prefix.uri.rstrip("/") + ".complete.json"  # beside the set: everything in it is scored
    if exists(marker):
        return prefix.uri
    ensure_bucket(prefix.uri)
    rng = np.random.default_rng(0)
    pictures = [cv2.imencode(".jpg", rng.integers(0, 256, (16, 16, 3), np.uint8))[1].tobytes() for _ in range(256)]
    client, began = s3_client(), time.time()
    echo(f"uploading {count:,} tiny JPEGs to {prefix.uri}")

    def put(i: int) -> None:
        client.put_object(Bucket=prefix.bucket, Key=prefix.join(f"img-{i:08d}.jpg").key, Body=pictures[i % 256],
                          ContentType="image/jpeg")

    with ThreadPoolExecutor(max_workers=16) as uploads:  # boto3's client is thread-safe; its pool holds 32
        list(uploads.map(put, range(count)))
    write_bytes(marker, json.dumps({"version": VERSION, "objects": count}).encode())
    echo(f"  uploaded in {time.time() - began:.0f} s")
    return prefix.uri


def measure_night(input_uri: str, model_uri: str, output_uri: str, objects: int) -> dict[str, Any]:
    """One first night over `input_uri`, as `mediajobs run` runs it, in a fresh interpreter.

    Raises:
        JobFailedError: the run failed, or did not score every object.
    """
    from jobs.errors import JobFailedError

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="mediajobs-scale-") as folder:
        result, log = Path(folder, "result.json"), Path(folder, "child.log")
        began = time.time()
        with open(log, "wb") as out:  # Ray's and the run's lines: shown only if it fails
            child = subprocess.run([sys.executable, "-m", "jobs.bench.scale", "--child"], cwd=root, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, input=json.dumps(
                                       {"input": input_uri, "model": model_uri, "output": output_uri,
                                        "result": str(result)}).encode())
        if child.returncode != 0 or not result.exists():
            raise JobFailedError(f"the scale run over {input_uri} failed (exit {child.returncode}):\n"
                                 + log.read_text(errors="replace")[-3000:])
        figures = json.loads(result.read_text())
    if figures["scored"] != objects or figures["errors"]:
        raise JobFailedError(f"the scale run over {input_uri} scored {figures['scored']} of {objects} objects "
                             f"({figures['errors']} errors)")
    return {**figures, "objects": objects, "process_seconds": round(time.time() - began, 2)}


def _child() -> None:
    """In the fresh interpreter: run the night with its phases clocked; write the figures."""
    import resource

    from jobs.runs.dispatch import run_spec
    from jobs.runs.nightly import NightlyResult
    from jobs.spec.load import parse_spec
    from jobs.storage.objects import parse_uri, read_bytes

    args = json.load(sys.stdin)
    spent = clock_phases(parse_uri(args["input"]).as_prefix().uri)
    spec = parse_spec({"version": 1, "kind": "score", "name": "bench-scale", "input": args["input"],
                       "output": args["output"], "incremental": True, "max_error_rate": 0.05, "batch_size": 256,
                       "top_k": 3, "routes": [{"media": "image", "model": args["model"]}],
                       "resources": {"concurrency": 2, "use_gpu": False, "num_gpus": 0}}, "<bench --scale>")
    # Peaks from VmHWM, not ru_maxrss: across fork + exec Linux hands the child the launcher's
    # peak as its ru_maxrss (measured: the bench process's 972 MiB for a 370 MiB driver).
    import_peak = _status_bytes("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM: from here the peak is the run's own
    rss_before = _status_bytes("VmRSS")
    cpu, began = time.process_time(), time.perf_counter()
    night = run_spec(spec, echo=_note, run_date=RUN_DATE)  # connects to Ray as `mediajobs run` does
    assert isinstance(night, NightlyResult)  # an incremental score spec
    total, run_cpu, run_peak = time.perf_counter() - began, time.process_time() - cpu, _status_bytes("VmHWM")
    phases = {p: {"seconds": s[0], "cpu_seconds": s[1]} for p, s in spent.items() if p != "entered"}
    phases["start"] = {"seconds": spent["entered"][0] - began, "cpu_seconds": spent["entered"][1] - cpu}
    for unit, whole in (("seconds", total), ("cpu_seconds", run_cpu)):
        for outer, inner in (("decide", "listing"), ("decide", "pending"), ("publish", "report")):
            phases[outer][unit] -= phases[inner][unit]  # the outer phase's own time
        phases["other"][unit] = whole - sum(phases[p][unit] for p in PHASES if p != "other")
    events_uri = parse_uri(args["output"]).as_prefix().join("runs", night.run_id, "events.jsonl").uri
    events = [json.loads(line) for line in read_bytes(events_uri).splitlines()]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(args["result"]).write_text(json.dumps({
        "run_id": night.run_id, "listed": night.listed, "scored": night.scored, "errors": night.errors,
        "seconds": round(total, 3), "phases": {p: {k: round(v, 3) for k, v in phases[p].items()} for p in PHASES},
        "events": {f"{a['phase']}->{b['phase']}": round(b["seconds"] - a["seconds"], 3)
                   for a, b in zip(events, events[1:])},
        "run_cpu_seconds": round(run_cpu, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_bytes": max(import_peak, run_peak), "run_peak_rss_bytes": run_peak,
        "import_peak_rss_bytes": import_peak, "rss_before_bytes": rss_before}))


def _status_bytes(key: str) -> int:
    """A `kB` line of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(key + ":"))


def clock_phases(input_prefix: str) -> dict[str, list[float]]:
    """Wrap the nightly driver's steps so that each adds its wall and CPU seconds to its
    phase (`entered`: when decide began). The one function to adapt when the driver changes."""
    import jobs.reports.figures as figures
    import jobs.reports.report as report
    import jobs.runs.nightly as nightly
    from jobs.storage.objects import parse_uri

    spent: dict[str, list[float]] = {phase: [0.0, 0.0] for phase in PHASES}

    def add(phase: str, wall: float, cpu: float) -> None:
        spent[phase][0] += time.perf_counter() - wall
        spent[phase][1] += time.process_time() - cpu

    def clock(owner: object, name: str, phase: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            if phase == "decide":
                spent.setdefault("entered", [wall, cpu])
            try:
                return original(*args, **kwargs)
            finally:
                add(phase, wall, cpu)

        setattr(owner, name, timed)

    listed = nightly.list_objects

    def listing(uri: str, *args: Any, **kwargs: Any) -> Any:
        objects = listed(uri, *args, **kwargs)
        if parse_uri(uri).as_prefix().uri != input_prefix:  # the staging's own listings
            return objects

        def pages():  # the time spent getting the listing's pages, not in what consumes them
            while True:
                wall, cpu = time.perf_counter(), time.process_time()
                item = next(objects, None)
                add("listing", wall, cpu)
                if item is None:
                    return
                yield item
        return pages()

    nightly.list_objects = listing
    for owner, name, phase in ((nightly.Night, "decide", "decide"), (nightly.Night, "_write_pending", "pending"),
                               (nightly.Night, "score", "scoring"), (nightly, "stage_night_tables", "commit"),
                               (nightly, "write_snapshot", "ledger"), (nightly, "publish_committed", "publish"),
                               (figures, "read_figures", "report"), (report, "write_report", "report")):
        clock(owner, name, phase)
    return spent


# -- the model --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinearFit:
    """`fixed + per_object * N` seconds (or bytes), never below zero."""

    fixed: float
    per_object: float

    def at(self, objects: int) -> float:
        return max(0.0, self.fixed + self.per_object * objects)


def fit_line(points: Mapping[int, float]) -> LinearFit:
    """Least squares through (N, value). A falling slope (noise in a phase that does not grow)
    is read as a constant, the largest value seen: never a phase that shrinks with N."""
    if len(points) < 2:
        raise ValueError(f"a fit needs two sizes or more, got {sorted(points)}")
    sizes, values = list(points), list(points.values())
    mean_n, mean_v = sum(sizes) / len(sizes), sum(values) / len(values)
    slope = sum((n - mean_n) * (v - mean_v) for n, v in zip(sizes, values)) / sum((n - mean_n) ** 2 for n in sizes)
    return LinearFit(max(values), 0.0) if slope < 0 else LinearFit(mean_v - slope * mean_n, slope)


def model_from_runs(runs: Mapping[int, Mapping[str, Any]], targets: Sequence[int] = TARGETS) -> dict[str, Any]:
    """Fit every phase (and the serial sum, the total, the peak RSS) over the runs; extrapolate
    to `targets`. The first bottleneck is the serial phase largest at the biggest target;
    `serial_exceeds_scoring_at` the size from which the serial phases together take longer
    than scoring on this machine (None: at no size, they grow slower per object)."""
    sizes = sorted(runs)
    series = {p: {n: float(runs[n]["phases"][p]["seconds"]) for n in sizes} for p in PHASES}
    series["serial"] = {n: sum(series[p][n] for p in SERIAL) for n in sizes}
    series["total"] = {n: float(runs[n]["seconds"]) for n in sizes}
    lines = {name: fit_line(values) for name, values in series.items()}
    rss = fit_line({n: float(runs[n]["run_peak_rss_bytes"]) for n in sizes})
    serial, scoring = lines["serial"], lines["scoring"]
    bottleneck = max(SERIAL, key=lambda p: (lines[p].at(max(targets)), lines[p].per_object))
    crossing = None
    if serial.per_object > scoring.per_object:
        crossing = max(0, math.ceil((scoring.fixed - serial.fixed) / (serial.per_object - scoring.per_object)))
    return {
        "sizes": sizes, "targets": list(targets),
        "fits": {name: {"measured": {str(n): round(v, 3) for n, v in series[name].items()},
                        "fixed_s": round(line.fixed, 3), "per_object_us": round(line.per_object * 1e6, 3),
                        "at": {str(n): round(line.at(n), 1) for n in targets}} for name, line in lines.items()},
        "run_peak_rss": {"measured": {str(n): runs[n]["run_peak_rss_bytes"] for n in sizes},
                         "fixed_bytes": round(rss.fixed), "per_object_bytes": round(rss.per_object, 1),
                         "at": {str(n): round(rss.at(n)) for n in targets}},
        "bottleneck": bottleneck,
        "bottleneck_share_of_serial": {str(n): round(lines[bottleneck].at(n) / max(serial.at(n), 1e-9), 3)
                                       for n in targets},
        "serial_exceeds_scoring_at": crossing,
        # How many times faster than here scoring must get (a bigger cluster) before the
        # serial driver takes as long as it: the driver's headroom at each size.
        "scoring_speedup_to_driver_bound": {str(n): round(scoring.at(n) / max(serial.at(n), 1e-9), 1)
                                            for n in targets},
    }


def scale_model(sizes: Sequence[int] = (10_000, 100_000), bucket: str = "s3://mediajobs-bench/",
                echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure a first night at each size (into a fresh output), then `model_from_runs`."""
    from jobs.bench import machine
    from jobs.bench.models import export_model
    from jobs.storage.objects import delete_prefix

    began, stamp = time.time(), time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    # The CIFAR-10 CNN takes 32x32: the 16x16 objects are resized up, as in the load tier.
    model = export_model(bucket.rstrip("/") + f"/scale-v{VERSION}/models/cifar10-cnn/", "image-classifier",
                         "cifar10-cnn", {"input_shape": [32, 32, 3]})
    runs: dict[int, dict[str, Any]] = {}
    for count in sizes:
        source = ensure_objects(bucket, count, echo)
        output = bucket.rstrip("/") + f"/scale-v{VERSION}/out/{stamp}-{count}/"
        runs[count] = run = measure_night(source, model, output, count)
        delete_prefix(output)  # its figures and events are read: a run's tables are not kept
        echo(f"  {count:>11,} objects: {run['seconds']:.1f} s, driver CPU {run['run_cpu_seconds']:.1f} s, "
             f"peak RSS {run['run_peak_rss_bytes'] / 2 ** 20:.0f} MiB in the run, "
             f"{run['peak_rss_bytes'] / 2 ** 20:.0f} MiB with the imports")
    return {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": machine(), "run_date": RUN_DATE,
            "runs": {str(n): r for n, r in runs.items()}, "model": model_from_runs(runs),
            "seconds": round(time.time() - began, 1)}


def render(figures: dict[str, Any]) -> Any:
    """The table: each phase at each measured size, its fit, and the extrapolation."""
    from rich.table import Table

    model = figures["model"]
    sizes, targets, fits, rss = model["sizes"], model["targets"], model["fits"], model["run_peak_rss"]
    table = Table(title="a first night: driver seconds per phase (fit: fixed + per object x N)")
    for column in ["phase", *(f"s at {n:,}" for n in sizes), "µs / object", "fixed s", *(f"at {n:,}" for n in targets)]:
        table.add_column(column, justify="left" if column == "phase" else "right")
    for name, fit in ((name, fits[name]) for name in (*PHASES, "serial", "total")):
        table.add_row(name, *(f"{fit['measured'][str(n)]:.2f}" for n in sizes), f"{fit['per_object_us']:.1f}",
                      f"{fit['fixed_s']:.2f}", *(f"{fit['at'][str(n)]:,.0f} s" for n in targets))
    table.add_row("run's peak RSS MiB", *(f"{rss['measured'][str(n)] / 2 ** 20:.0f}" for n in sizes),
                  f"{rss['per_object_bytes']:.0f} B", f"{rss['fixed_bytes'] / 2 ** 20:.0f}",
                  *(f"{rss['at'][str(n)] / 2 ** 20:,.0f}" for n in targets))
    return table


def run_scale_command(sizes: Sequence[int], json_path: Path | None, echo: Callable[[str], None], console: Any,
                      bucket: str = "s3://mediajobs-bench/") -> dict:
    """`mediajobs bench --scale`: the runs, the table, the first bottleneck, the JSON.

    Raises:
        UsageError: fewer than two different sizes (a line needs two points).
    """
    from jobs.bench import write_json
    from jobs.errors import UsageError

    sizes = sorted(set(sizes))
    if len(sizes) < 2:
        raise UsageError(f"--scale needs two sizes or more to fit a line, got {', '.join(map(str, sizes))}")
    echo(f"nightly driver at scale: a first night over {' and '.join(f'{n:,}' for n in sizes)} tiny images, each "
         "in a fresh process; each phase fitted as fixed + per object x N and extrapolated")
    figures = scale_model(sizes, bucket, echo)
    console.print(render(figures))
    model = figures["model"]
    crossing, biggest = model["serial_exceeds_scoring_at"], str(max(model["targets"]))
    echo(f"first bottleneck: {model['bottleneck']} ({model['bottleneck_share_of_serial'][biggest]:.0%} of the serial "
         f"driver time at {int(biggest):,}); the serial phases exceed scoring on this machine "
         + (f"from {crossing:,} objects" if crossing is not None else "at no size (they grow slower per object)")
         + f"; at {int(biggest):,} scoring would have to be {model['scoring_speedup_to_driver_bound'][biggest]}x "
         "faster than here for the driver to bound the night")
    if json_path is not None:
        write_json(figures, str(json_path))
        echo(f"figures: {json_path}")
    return figures


if __name__ == "__main__" and sys.argv[1:] == ["--child"]:
    _child()
