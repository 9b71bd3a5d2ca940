"""What `mediajobs bench` does around `run_bench`: the stack, Ray, the table, the JSON."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchMode:
    """What `mediajobs bench` was asked for: the whole bench, or one of its parts alone."""

    quick: bool
    json_path: Path | None
    repeats: int | None
    bucket: str
    driver_memory: bool
    objects: int
    training_parity: bool
    scale: bool
    sizes: tuple[int, ...]


def run_bench_mode(mode: BenchMode, echo: Callable[[str], None], console,
                   job_console: Callable[[], AbstractContextManager]) -> None:
    """Run what `mode` asks for. The whole bench and `--scale` run Ray jobs: their output goes
    to the job's log file (`job_console`); the parity and driver-memory parts print their own."""
    if mode.training_parity:
        from jobs.bench.parity import run_parity_command

        run_parity_command(mode.bucket, mode.json_path, echo)
    elif mode.driver_memory:
        from jobs.bench.driver_memory import run_driver_memory_command

        run_driver_memory_command(mode.objects, mode.json_path, echo)
    elif mode.scale:
        from jobs.bench.scale import run_scale_command

        with job_console():
            _connect(echo)
            run_scale_command(mode.sizes, mode.json_path, echo, console, bucket=mode.bucket)
    else:
        with job_console():
            run_bench_command(mode.quick, mode.json_path, mode.repeats, mode.bucket, echo, console)


def _connect(echo: Callable[[str], None]) -> None:
    """Ray (and the local stack, unless RAY_ADDRESS names a cluster) for the runs."""
    from jobs.runs.ray_runtime import connect_ray

    if not os.environ.get("RAY_ADDRESS"):
        from cluster.local_stack import up

        echo("starting the local stack (Ray head + SeaweedFS S3 on 127.0.0.1), or keeping it")
        up()
    echo(f"ray: {connect_ray()}")


def run_bench_command(quick: bool, json_path: Path | None, repeats: int | None, bucket: str,
                      echo: Callable[[str], None], console) -> dict:
    from jobs.bench import run_bench, write_json
    from jobs.bench.table import render

    _connect(echo)
    figures = run_bench(quick=quick, bucket=bucket, repeats=repeats, echo=echo)
    console.print(render(figures))
    missed = [t for t in figures["targets"] if not t["met"]]
    echo(f"{len(figures['targets']) - len(missed)} of {len(figures['targets'])} targets met in "
         f"{figures['seconds'] / 60:.1f} min" + ("; missed: " + ", ".join(
             f"{t['section']} vs {t['versus']}" for t in missed) if missed else ""))
    if quick:
        echo("--quick: sizes this small measure start-up, not throughput; the ratios mean something only "
             "at the default sizes")
    if json_path is not None:
        write_json(figures, str(json_path))
        echo(f"figures: {json_path}")
    return figures
