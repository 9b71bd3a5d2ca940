"""What `mediajobs bench` does around `run_bench`: the stack, Ray, the table, the JSON."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def run_bench_command(quick: bool, json_path: Path | None, repeats: int | None, bucket: str,
                      echo: Callable[[str], None], console) -> dict:
    from jobs.bench import run_bench, write_json
    from jobs.bench.table import render
    from jobs.runs.ray_runtime import connect_ray

    if not os.environ.get("RAY_ADDRESS"):
        from cluster.local_stack import up

        echo("starting the local stack (Ray head + SeaweedFS S3 on 127.0.0.1), or keeping it")
        up()
    echo(f"ray: {connect_ray()}")
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
