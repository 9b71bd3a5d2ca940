"""Dispatch a validated spec to its runner, on the Ray the driver connects to."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobs.runs.ray_runtime import connect_ray

if TYPE_CHECKING:  # the runners load Ray Data, TensorFlow, ... on use
    from jobs.runs.generate import GenerateResult
    from jobs.runs.nightly import NightlyResult
    from jobs.runs.score import ScoreResult
    from jobs.runs.stylize import StylizeResult
    from jobs.runs.train import TrainResult
    from jobs.spec.kinds import GenerateSpec, RoutedScoreSpec, ScoreSpec, StylizeSpec, TrainSpec
    from jobs.spec.load import Spec

Echo = Callable[[str], None]


def run_spec(spec: Spec, address: str | None = None, echo: Echo = print, run_date: str | None = None) -> object:
    """Run a spec (train, score, generate, stylize) and print its summary; returns the runner's result.

    `run_date` (YYYY-MM-DD, default today UTC) is the date an incremental score job scores as of.
    """
    from jobs.errors import UsageError

    incremental = spec.kind == "score" and spec.incremental
    if run_date is not None and not incremental:
        raise UsageError(f"--run-date applies to incremental score jobs; {spec.name!r} is a {spec.kind} job"
                         + (" without incremental: true" if spec.kind == "score" else ""))
    where = connect_ray(address)
    echo(f"{spec.kind} job {spec.name!r} on {where}")
    if spec.kind == "score" and spec.incremental:  # `incremental`, spelled out: mypy narrows the spec's type by it
        return _run_incremental(spec, run_date, echo)
    return _RUNNERS[spec.kind](spec, echo)


def run_folder(result: object) -> str | None:
    """Where a finished run keeps its records (`runs/<run_id>/`, beside its summary.json; a
    train job's `runs/<model_id>/`), ending in "/"; None for a result without one."""
    summary = getattr(result, "summary_uri", "") or getattr(result, "tables", {}).get("summary", "")
    folder = summary.rsplit("/", 1)[0] + "/" if summary else getattr(result, "run_folder", "")
    return folder or None


def _run_train(spec: TrainSpec, echo: Echo) -> TrainResult:
    from jobs.runs.train import run_train

    result = run_train(spec, echo=echo)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()
                        if k not in ("epoch", "epoch_seconds", "steps"))
    echo(f"trained {result.epochs_run} epochs on {result.examples} examples in {result.seconds:.0f}s: {metrics}")
    if result.exported_epoch is not None and result.exported_epoch != result.epochs_run:
        echo(f"exported the model of epoch {result.exported_epoch} (the best by early_stopping.monitor)")
    nodes = {w["node_id"] for w in result.workers}
    echo(f"workers: {len(result.workers)} on {len(nodes)} node{'s' if len(nodes) != 1 else ''}")
    echo(f"model: {result.model_uri}")
    return result


def _run_generate(spec: GenerateSpec, echo: Echo) -> GenerateResult:
    from jobs.runs.generate import run_generate

    result = run_generate(spec, echo=echo)
    echo(f"generated {result.count} images in {result.seconds:.1f}s ({result.throughput:.1f} images/s)")
    for name, uri in (("images:", result.images_uri), ("index:", result.index_uri), ("grid:", result.grid_uri)):
        echo(f"{name:<12} {uri}")
    if result.quality is not None:
        from tasks.sample_quality import describe_quality

        for line in describe_quality(result.quality):
            echo(f"{'quality:':<12} {line}")
    echo(f"{'summary:':<12} {result.summary_uri}")
    return result


def _run_stylize(spec: StylizeSpec, echo: Echo) -> StylizeResult:
    from jobs.runs.stylize import run_stylize

    result = run_stylize(spec, echo=echo)
    echo(f"stylized {result.contents - result.errors} of {result.contents} images in {len(spec.styles)} styles "
         f"in {result.seconds:.1f}s: {result.results} results, {result.errors} errors")
    if result.content_loss is not None:
        echo(f"mean losses:   content {result.content_loss:.4f}, style {result.style_loss:.4f}")
    for name, uri in result.tables.items():
        echo(f"{name + ':':<14} {uri}")
    return result


def _run_score(spec: ScoreSpec, echo: Echo) -> ScoreResult:
    from jobs.runs.score import run_score

    result = run_score(spec, echo=echo)
    partial = f" ({result.partial} only in part, also in errors)" if result.partial else ""
    echo(f"scored {result.listed} objects in {result.seconds:.1f}s ({result.throughput:.1f} objects/s): "
         f"{result.predicted} with predictions{partial}, {result.errors} errors; {result.examples} example rows")
    for name, uri in result.tables.items():
        echo(f"{name + ':':<12} {uri}")
    echo(f"{'summary:':<12} {result.summary_uri}")
    budget, scored = spec.error_budget, result.predicted + result.errors
    if budget is not None and scored and result.errors / scored > budget:
        from jobs.errors import JobFailedError

        raise JobFailedError(f"error budget exceeded: {result.errors} of {scored} objects failed "
                             f"({result.errors / scored:.1%} > max_error_rate {budget:.1%}); the tables were "
                             f"written, see {result.errors_uri}")
    return result


# One runner per job kind; each prints its own summary lines.
_RUNNERS: dict[str, Callable[[Any, Echo], object]] = {
    "train": _run_train, "generate": _run_generate, "stylize": _run_stylize, "score": _run_score}


def _run_incremental(spec: ScoreSpec | RoutedScoreSpec, run_date: str | None, echo: Echo) -> NightlyResult:
    from jobs.runs.nightly import error_budget_exceeded, run_incremental

    result = run_incremental(spec, run_date, echo=echo)
    if not result.committed:
        return result
    resumed = f" ({result.resumed} finished by an earlier attempt)" if result.resumed else ""
    echo(f"run date {result.run_date}: {result.scored} objects with predictions, {result.errors} errors{resumed}, "
         f"{result.skipped} skipped, {result.unchanged} unchanged, {result.deleted} deleted, of {result.listed} "
         f"listed, in {result.seconds:.1f}s; error rate {result.error_rate:.1%}")
    for name, uri in result.tables.items():
        echo(f"{name + ':':<12} {uri}run_date={result.run_date}/")
    echo(f"{'summary:':<12} {result.summary_uri}")
    if result.report_uri:
        echo(f"{'report:':<12} {result.report_uri}")
    failure = error_budget_exceeded(result, spec)
    if failure is not None:
        raise failure
    return result
