"""The `mediajobs` command line: parse, load, override, call one library function, print."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from jobs.cli.ingest import ProgressBar, ingest_commands
from jobs.cli.local import local_commands
from jobs.cli.tables import table_commands
from jobs.errors import USER_ERRORS, MediaJobsError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True,
                  help="Train and run deep-learning models on media with Ray, TensorFlow and S3.")

console = Console(stderr=False, highlight=False, soft_wrap=True)  # whole lines: ids and URIs stay greppable
_state = {"verbose": False}


VERBOSE_FLAGS = ("--verbose", "-v")


@app.callback()
def _options(verbose: bool = typer.Option(False, *VERBOSE_FLAGS, help="Show tracebacks and Ray's, Ray Data's and "
                                                                      "TensorFlow's own output (anywhere on the "
                                                                      "command line).")) -> None:
    _state["verbose"] = _state["verbose"] or verbose  # main() takes the flag from anywhere on the line
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def echo(message: str) -> None:
    console.print(message, markup=False, emoji=False)  # a URI or name with ":smile:" stays as written


@contextmanager
def _job_console(command: str) -> Iterator[Path | None]:
    """Our lines on the terminal; Ray's, Ray Data's and TensorFlow's own output in a log file
    whose path is printed first (jobs.cli.run_log). With --verbose, all of it on the terminal
    as it comes, and no log file (yields None)."""
    if _state["verbose"]:
        yield None
        return
    from jobs.cli.progress_view import live_progress
    from jobs.cli.run_log import RunLog, relay_worker_lines

    with RunLog(command) as log:
        console.file = log.stdout
        stop_relay: Callable[[], None] = lambda: None  # noqa: E731
        echo(f"log: {log.path} (what Ray and the workers print; --verbose shows it here)")
        try:
            with live_progress(console) as progress:
                stop_relay = relay_worker_lines(echo, progress)
                yield log.path
        except BaseException:
            echo(f"the run's whole log: {log.path}")
            raise
        finally:
            _disconnect_ray()  # Ray's goodbyes (actors killed, workers gone) go to the log too
            stop_relay()
            console.file = None  # type: ignore[assignment]  # back to sys.stdout (rich's default)


def _disconnect_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@app.command()
def run(
    spec: Path = typer.Argument(..., help="The job spec (YAML)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a spec field: key.path=value (repeatable)."),
    address: str | None = typer.Option(None, help="Ray address; default RAY_ADDRESS, then the local stack, "
                                                     "else an in-process Ray."),
    run_date: str | None = typer.Option(None, "--run-date", help="Incremental score jobs: the date to score as "
                                                                    "of, YYYY-MM-DD (default today, UTC)."),
) -> None:
    """Run a job spec (train, score, generate or stylize) with this process as the Ray driver."""
    from jobs.nightly.routes import check_run_date
    from jobs.runs.dispatch import run_spec
    from jobs.spec.load import load_spec

    job = load_spec(spec, set_ or [])
    with _job_console("run") as log:
        result = run_spec(job, address=address, echo=echo, run_date=check_run_date(run_date) if run_date else None)
        if log is not None:
            _keep_log(result, log)


def _keep_log(result: object, log: Path) -> None:
    """The run's log file beside its summary (runs/<run_id>/job.log), when the run has one."""
    from jobs.runs.dispatch import run_folder
    from jobs.storage.objects import write_bytes

    folder = run_folder(result)
    if not folder:
        return
    try:
        write_bytes(folder + "job.log", log.read_bytes())
    except (MediaJobsError, OSError) as exc:  # the run is done and committed: its log is a courtesy
        echo(f"note: the log was not kept beside the summary ({exc}); it is at {log}")
        return
    echo(f"{'log:':<12} {folder}job.log")


@app.command()
def validate(
    spec: Path = typer.Argument(..., help="The job spec (YAML)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a spec field: key.path=value."),
) -> None:
    """Check a spec without running it."""
    from jobs.spec.load import load_spec, spec_hash

    job = load_spec(spec, set_ or [])
    echo(f"{spec}: valid {job.kind} spec {job.name!r} (hash {spec_hash(job)})")


@app.command()
def schema() -> None:
    """Print the job spec's JSON Schema (for editors' YAML language servers)."""
    from jobs.spec.schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))


_ADDRESS_HELP = ("The cluster's Jobs API (dashboard) URL, e.g. http://HEAD:8265; default RAY_ADDRESS, "
                 "then the local stack.")


@app.command()
def submit(
    spec: Path = typer.Argument(..., help="The job spec (YAML)."),
    set_: list[str] | None = typer.Option(None, "--set", help="Override a spec field: key.path=value (repeatable)."),
    address: str | None = typer.Option(None, help=_ADDRESS_HELP),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow the job: stream its log and exit with its "
                                                             "outcome (0 succeeded, 1 failed or stopped), as "
                                                             "`ray job submit` does; --no-wait returns once it "
                                                             "is submitted."),
    submission_id: str | None = typer.Option(None, "--submission-id", help="Use this id instead of "
                                                "<name>-<run date>-<spec hash>."),
    force: bool = typer.Option(False, "--force", help="Start another run even if this spec was already "
                                                      "submitted for the run date."),
    run_date: datetime | None = typer.Option(None, "--run-date", formats=["%Y-%m-%d"],
                                                help="The run date (UTC) in the submission id; default today."),
) -> None:
    """Submit a job spec to a Ray cluster through Ray's Jobs API (exit 3: already submitted)."""
    from jobs.spec.load import load_spec
    from jobs.submission.clusters import jobs_client, resolve_target
    from jobs.submission.control import outcome, wait_for_job
    from jobs.submission.submit import submit_spec

    job = load_spec(spec, set_ or [])
    target = resolve_target(address)
    job_id = submit_spec(job, target, run_date=run_date.date() if run_date else None, submission_id=submission_id,
                         force=force, echo=echo)
    echo(f"submitted {job_id}; " + ("following its log (Ctrl-C stops following, not the job)" if wait
                                     else f"follow it with `mediajobs logs {job_id} --follow`"))
    if wait:
        client = jobs_client(target)
        try:
            _follow(client, target, job_id)
            view = wait_for_job(client, target, job_id)
        except KeyboardInterrupt:  # as with `ray job submit`: the job goes on
            echo(f"\nstopped following; job {job_id} keeps running (`mediajobs logs {job_id} --follow` follows it "
                 f"again, `mediajobs stop {job_id}` stops it)")
            raise
        echo(f"job {job_id} {view.state}")
        outcome(view)


@app.command()
def status(
    job_id: str = typer.Argument(..., metavar="JOB", help="A submission id (see `mediajobs list`)."),
    address: str | None = typer.Option(None, help=_ADDRESS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a submitted job: spec name, kind, state, start and end times."""
    from jobs.submission.clusters import jobs_client, resolve_target
    from jobs.submission.control import describe_job

    target = resolve_target(address)
    view = describe_job(jobs_client(target), target, job_id)
    if as_json:
        typer.echo(json.dumps(view.to_json(), indent=2))
        return
    for name, value in view.to_json().items():
        echo(f"{name + ':':<15} {value if value not in (None, '') else '-'}")


@app.command()
def logs(
    job_id: str = typer.Argument(..., metavar="JOB", help="A submission id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming until the job ends."),
    address: str | None = typer.Option(None, help=_ADDRESS_HELP),
) -> None:
    """Print a submitted job's log."""
    from jobs.cli.progress_view import JobLogLines
    from jobs.submission.clusters import jobs_client, resolve_target
    from jobs.submission.control import job_logs

    target = resolve_target(address)
    client = jobs_client(target)
    if follow:
        _follow(client, target, job_id)
    else:
        lines = JobLogLines(_write_raw)  # progress lines are for a live view: left out here
        lines(job_logs(client, target, job_id))
        lines.flush()


@app.command()
def stop(
    job_id: str = typer.Argument(..., metavar="JOB", help="A submission id."),
    address: str | None = typer.Option(None, help=_ADDRESS_HELP),
) -> None:
    """Stop a submitted job and wait until it has stopped."""
    from jobs.submission.clusters import jobs_client, resolve_target
    from jobs.submission.control import stop_job

    target = resolve_target(address)
    view = stop_job(jobs_client(target), target, job_id)
    echo(f"job {job_id} {view.state}")


@app.command("list")
def list_(
    address: str | None = typer.Option(None, help=_ADDRESS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a list of jobs)."),
) -> None:
    """List the cluster's jobs, newest first: id, spec name, kind, state, start and end (UTC)."""
    from rich.table import Table

    from jobs.submission.clusters import jobs_client, resolve_target
    from jobs.submission.control import list_jobs

    target = resolve_target(address)
    views = list_jobs(jobs_client(target), target)
    if as_json:
        typer.echo(json.dumps([v.to_json() for v in views], indent=2))
        return
    table = Table(title=f"jobs on {target.address}")
    for column in ("job", "spec", "kind", "state", "start", "end"):
        table.add_column(column, overflow="fold")
    for v in views:
        table.add_row(v.submission_id, v.spec_name or "-", v.kind or "-", v.state, v.start_time or "-",
                      v.end_time or "-")
    console.print(table)


def _write_raw(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _follow(client, target, job_id: str) -> None:
    from jobs.cli.progress_view import show_followed_log
    from jobs.submission.control import follow_logs

    show_followed_log(console, lambda write: follow_logs(client, target, job_id, write))


@app.command()
def report(
    output: str = typer.Argument(..., help="The output URI of an incremental score job."),
    run_date: str | None = typer.Option(None, "--run-date", help="The run date, YYYY-MM-DD (default: the "
                                                                    "latest committed)."),
    open_: bool = typer.Option(False, "--open", help="Also save a local copy and open it in a browser."),
) -> None:
    """Render a nightly run's morning report again (runs/<run_id>/report.html) from its tables."""
    from jobs.nightly.routes import check_run_date
    from jobs.reports.report import rerender_report
    from jobs.storage.objects import read_bytes

    date, uri = rerender_report(output, check_run_date(run_date) if run_date else None)
    echo(f"report of {date}: {uri}")
    if open_:
        local = Path(tempfile.gettempdir()) / f"mediajobs-report-{date}.html"
        local.write_bytes(read_bytes(uri))
        echo(f"local copy: {local}")
        webbrowser.open(local.as_uri())


@app.command()
def demo(
    epochs: int = typer.Option(4, min=1, help="Training epochs."),
    images_per_class: int = typer.Option(150, min=10, help="Generated training images per class."),
) -> None:
    """The main job, end to end: local stack up, data ingested, 2 workers train, a held-out folder scored."""
    from jobs.cli.demo import run_demo

    with _job_console("demo"):
        run_demo(epochs=epochs, images_per_class=images_per_class, echo=echo,
                 progress=ProgressBar.bar(console, "uploading"))


@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="Small sizes, one run each: a smoke run of a few minutes."),
    json_: Path | None = typer.Option(None, "--json", help="Also write the figures to this JSON file."),
    repeats: int | None = typer.Option(None, min=1, help="Runs of each measurement (default 3, --quick 1)."),
    bucket: str = typer.Option("s3://mediajobs-bench/", help="Where the benchmark's media are made and kept."),
    driver_memory: bool = typer.Option(False, "--driver-memory",
                                       help="Only the nightly commit's peak driver memory, on synthetic staged "
                                            "tables of N and 5N objects (local files; no Ray, no S3)."),
    objects: int = typer.Option(1_000_000, min=5, help="--driver-memory: objects at 5N."),
    training_parity: bool = typer.Option(False, "--training-parity",
                                         help="Only the same train specs (spoken words, shapes) on 1 and on 2 "
                                              "workers: validation accuracy must agree within 2 points."),
    scale: bool = typer.Option(False, "--scale", help="Only the nightly driver's cost per object: a first night "
                               "over tiny images at each --sizes, fitted per phase and extrapolated to 10M."),
    sizes: list[int] = typer.Option([10_000, 100_000], "--sizes", min=1,
                                    help="--scale: numbers of objects, two or more (repeat the option)."),
) -> None:
    """Time our pipelines against the obvious alternatives on data made here; print the ratios."""
    from jobs.bench.cli import BenchMode, run_bench_mode

    mode = BenchMode(quick, json_, repeats, bucket, driver_memory, objects, training_parity, scale, tuple(sizes))
    run_bench_mode(mode, echo, console, job_console=lambda: _job_console("bench"))


@app.command()
def predict(
    model: str = typer.Argument(..., help="A trained model: the output URI of a train job (or .../@<model_id>)."),
    source: str = typer.Argument(..., help="An image or video (path or s3:// URI), or a camera index (0, 1, ...)."),
    out: Path | None = typer.Option(None, "--out", help="Write the annotated video (MP4) here."),
    show: bool = typer.Option(False, "--show", help="Show the annotated frames in a window (needs a display)."),
    every_n_frames: int = typer.Option(1, min=1, help="Classify every n-th frame."),
    batch: int = typer.Option(8, min=1, help="Frames per model call."),
    max_frames: int | None = typer.Option(None, min=1, help="Stop after this many classified frames."),
    trust_model_code: bool = typer.Option(False, "--trust-model-code",
                                          help="Load a model whose files carry code (Lambda layers, custom objects)."),
) -> None:
    """Classify one image, video file or camera stream, printing predictions as they come."""
    from jobs.runs.predict import predict_source

    predict_source(model, source, echo=echo, batch=batch, every_n_frames=every_n_frames, max_frames=max_frames,
                   out=str(out) if out else None, show=show, trust_model_code=trust_model_code)


app.add_typer(ingest_commands(console, echo), name="ingest")
app.add_typer(local_commands(console), name="local")
app.add_typer(table_commands(console), name="tables")


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 ok, 1 job failed, 2 bad usage or spec."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = _state["verbose"] = any(arg in VERBOSE_FLAGS for arg in args)
    command = typer.main.get_command(app)
    try:
        command.main(args=[arg for arg in args if arg not in VERBOSE_FLAGS], prog_name="mediajobs",
                     standalone_mode=False)
        return 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        console.print("aborted")
        return 130
    except typer.TyperException as exc:  # click's usage errors, as vendored by typer
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        return getattr(exc, "exit_code", 2) or 2
    except USER_ERRORS as exc:
        if verbose:
            traceback.print_exc()
        # soft_wrap: keep each message line whole, so it can be grepped and copied
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold red]{exc.headline}:[/] {escape(exc.message)}", emoji=False)  # a field is named as written
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - the last resort: say it is ours and show where
        traceback.print_exc()
        Console(stderr=True).print("[bold red]internal error[/] (a bug in mediajobs; the traceback is above)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
