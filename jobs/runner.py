"""Dispatch a validated spec to its runner, on the Ray the driver connects to."""

from __future__ import annotations

from typing import Callable

from jobs.ray_runtime import connect_ray


def run_spec(spec, address: str | None = None, echo: Callable[[str], None] = print):
    """Run a train or score spec and print its summary; returns the runner's result."""
    where = connect_ray(address)
    echo(f"{spec.kind} job {spec.name!r} on {where}")
    if spec.kind == "train":
        from jobs.train import run_train

        result = run_train(spec, echo=echo)
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()
                            if k in ("loss", "accuracy", "val_loss", "val_accuracy"))
        echo(f"trained {result.epochs_run} epochs on {result.examples} examples in {result.seconds:.0f}s: {metrics}")
        echo(f"model: {result.model_uri}")
        return result
    from jobs.score import run_score

    result = run_score(spec, echo=echo)
    partial = f" ({result.partial} only in part, also in errors)" if result.partial else ""
    echo(f"scored {result.listed} objects in {result.seconds:.1f}s ({result.throughput:.1f} objects/s): "
         f"{result.predicted} with predictions{partial}, {result.errors} errors; {result.examples} example rows")
    for name, uri in result.tables.items():
        echo(f"{name + ':':<12} {uri}")
    echo(f"{'summary:':<12} {result.summary_uri}")
    return result
