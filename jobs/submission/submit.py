"""Submitting a spec to a Ray cluster through Ray's Jobs API.

What travels: the project's `jobs/` and `tasks/` packages (`py_modules`, size-checked),
the validated spec as `spec.yaml` (the `working_dir`), and the environment switches every
worker needs (`TF_USE_LEGACY_KERAS=1`; the S3 endpoint and region when this shell sets
them). Never a credential: the job reads S3 credentials from the cluster's own
environment or IAM role. The entrypoint is the same runner as `mediajobs run`.

The submission id is `<spec name>-<run date>-<spec hash>`: the same spec submitted twice
on one run date is refused instead of starting a second run; `--force` adds a suffix.

Where the driver runs: Ray starts a job's entrypoint on the head unless it asks for
resources. A driver holds a run's listing and commit, so on a cluster that advertises the
`mediajobs_driver` resource (the driver group of the definitions in `cluster/`) it asks for
one unit of it and runs there, away from the head's control plane; elsewhere it runs on
the head, as before, and the submission says so.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import MediaJobsError, UsageError
from jobs.runs.progress import PROGRESS_LINES_ENV
from jobs.runs.ray_runtime import WORKER_ENV, forwarded_settings
from jobs.storage.objects import parse_uri
from jobs.submission.clusters import ClusterTarget, cluster_resources, jobs_client, translated_errors
from jobs.submission.control import METADATA_PREFIX, find_job

__all__ = ["AlreadySubmittedError", "Submission", "prepare_submission", "submission_id_for", "submit_spec",
           "shipped_code_bytes", "METADATA_PREFIX"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PACKAGES = ("jobs", "tasks")
# Ray uploads py_modules through the GCS (512 MiB at most); our code is well under 1 MiB,
# so anything near this limit is data that strayed into a package.
SHIP_LIMIT_BYTES = 32 * 1024**2
SHIP_EXCLUDES = ["__pycache__", "*.pyc", "*.pyo", ".pytest_cache"]
SPEC_FILE = "spec.yaml"
# The logical resource of the nodes meant for drivers (the `drivers` group in cluster/).
DRIVER_RESOURCE = "mediajobs_driver"
# Non-secret storage settings a job may need from the submitting shell. Keys are never copied.
_STORAGE_SWITCHES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


class AlreadySubmittedError(MediaJobsError):
    """The spec was already submitted for this run date: nothing new was started."""

    headline = "already submitted"
    exit_code = 3


@dataclass(frozen=True)
class Submission:
    """Everything `JobSubmissionClient.submit_job` gets, decided before anything is sent."""

    submission_id: str
    entrypoint: str
    env_vars: dict[str, str]
    metadata: dict[str, str]
    spec_yaml: str


def submission_id_for(spec, run_date: dt.date, force: bool = False) -> str:
    """`<name>-<YYYY-MM-DD>-<8 hex of the spec hash>`, plus a random suffix when forced."""
    from jobs.spec.load import spec_hash

    base = f"{spec.name}-{run_date.isoformat()}-{spec_hash(spec)[:8]}"
    return f"{base}-{secrets.token_hex(3)}" if force else base


def _cluster_uri_problems(spec) -> list[str]:
    """Spec URIs a job on a cluster could not reach: local paths name the cluster's disk, not this one."""
    fields: list[tuple[str, str]] = []
    for name in ("input", "output", "model"):
        value = getattr(spec, name, None)
        if isinstance(value, str):
            fields.append((name, value))
    data = getattr(spec, "data", None)
    for name in ("train", "validation", "style"):
        if data is not None and getattr(data, name, None):
            fields.append((f"data.{name}", getattr(data, name)))
    fields += [(f"styles[{i}]", uri) for i, uri in enumerate(getattr(spec, "styles", None) or [])]
    fields += [(f"routes[{i}].model", route.model) for i, route in enumerate(getattr(spec, "routes", None) or [])]
    problems = []
    for field, value in fields:
        if value.startswith(("https://", "http://")):
            continue  # a TF Hub handle: the cluster fetches it itself
        if parse_uri(value).scheme != "s3":
            problems.append(f"{field}: {value!r} is a local path, which a job on the cluster cannot see; "
                            "use an s3:// URI (or `mediajobs run` to run here)")
    return problems


def prepare_submission(spec, run_date: dt.date, *, submission_id: str | None = None, force: bool = False,
                    environ: Mapping[str, str] | None = None) -> Submission:
    """The submission for a validated spec (pure: nothing is sent or written).

    Raises:
        UsageError: the spec names local paths, or `--submission-id` is not a plain name.
    """
    import yaml

    from jobs.spec.load import spec_hash, spec_to_dict

    problems = _cluster_uri_problems(spec)
    if problems:
        raise UsageError("cannot submit this spec to a cluster:\n" + "\n".join(problems))
    if submission_id is not None and not submission_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UsageError(f"--submission-id: {submission_id!r} must use letters, digits, '-', '_' or '.' only")
    environ = os.environ if environ is None else environ
    env_vars = {**WORKER_ENV, **forwarded_settings()}
    env_vars.update({name: environ[name] for name in _STORAGE_SWITCHES if environ.get(name)})
    env_vars[PROGRESS_LINES_ENV] = "1"  # the driver's progress as lines in the log, for `submit --wait`
    metadata = {
        f"{METADATA_PREFIX}spec_name": spec.name,
        f"{METADATA_PREFIX}kind": spec.kind,
        f"{METADATA_PREFIX}task": getattr(spec, "task", None) or ",".join(r.task for r in spec.routes),
        f"{METADATA_PREFIX}spec_hash": spec_hash(spec),
        f"{METADATA_PREFIX}run_date": run_date.isoformat(),
    }
    return Submission(
        submission_id=submission_id or submission_id_for(spec, run_date, force),
        # An incremental job scores as of the run date it was submitted for, even if it starts after midnight.
        entrypoint=f"python -m jobs.cli.app run {SPEC_FILE}" + (
            f" --run-date {run_date.isoformat()}" if getattr(spec, "incremental", False) else ""),
        env_vars=env_vars,
        metadata=metadata,
        spec_yaml=yaml.safe_dump(spec_to_dict(spec), sort_keys=False),
    )


def shipped_code_bytes(root: Path = PROJECT_ROOT) -> tuple[int, list[tuple[int, str]]]:
    """Bytes of the packages a submission ships (excludes applied) and the five largest files.

    Raises:
        UsageError: a package is missing, or they are larger than SHIP_LIMIT_BYTES.
    """
    import fnmatch

    sizes: list[tuple[int, str]] = []
    for package in SHIPPED_PACKAGES:
        folder = root / package
        if not (folder / "__init__.py").is_file():
            raise UsageError(f"cannot ship the {package}/ package from {root}: it is missing")
        for path in folder.rglob("*"):
            parts = path.relative_to(root).parts
            if path.is_file() and not any(fnmatch.fnmatch(part, pattern)
                                          for part in parts for pattern in SHIP_EXCLUDES):
                sizes.append((path.stat().st_size, str(path.relative_to(root))))
    total = sum(size for size, _ in sizes)
    largest = sorted(sizes, reverse=True)[:5]
    if total > SHIP_LIMIT_BYTES:
        listing = ", ".join(f"{name} ({size / 2**20:.1f} MiB)" for size, name in largest)
        raise UsageError(f"the code to ship ({', '.join(p + '/' for p in SHIPPED_PACKAGES)}) is "
                         f"{total / 2**20:.1f} MiB, over the {SHIP_LIMIT_BYTES // 2**20} MiB limit; largest files: "
                         f"{listing}. Keep data out of the packages (put it in object storage)")
    return total, largest


def driver_placement(resources: Mapping[str, float] | None) -> tuple[dict, str]:
    """`submit_job`'s entrypoint options for the cluster's resources, and a line saying
    where the driver will run."""
    def same(name: str) -> bool:  # the dashboard reports `mediajobs_driver` as `mediajobsDriver`
        return name.replace("_", "").lower() == DRIVER_RESOURCE.replace("_", "").lower()

    if resources and sum(total for name, total in resources.items() if same(name)) >= 1:
        return ({"entrypoint_resources": {DRIVER_RESOURCE: 1}, "entrypoint_num_cpus": 0},
                f"driver: on a node with the {DRIVER_RESOURCE} resource (the driver group), not the head")
    return {}, (f"driver: on the head node (the cluster advertises no {DRIVER_RESOURCE} resource; the definitions "
                "in cluster/ give drivers a group of their own)")


def submit_spec(spec, target: ClusterTarget, *, run_date: dt.date | None = None, submission_id: str | None = None,
                force: bool = False, echo: Callable[[str], None] = print) -> str:
    """Submit a validated spec; returns the submission id.

    Raises:
        AlreadySubmittedError: a job with this submission id exists (nothing is started).
        UsageError: the spec or the code cannot be shipped. ClusterError: the cluster refused.
    """
    run_date = run_date or dt.datetime.now(dt.timezone.utc).date()
    plan = prepare_submission(spec, run_date, submission_id=submission_id, force=force)
    total, _ = shipped_code_bytes()
    client = jobs_client(target)
    _refuse_duplicate(client, target, plan.submission_id)
    placement, where = driver_placement(cluster_resources(target))
    with tempfile.TemporaryDirectory(prefix="mediajobs-submit-") as working_dir:
        Path(working_dir, SPEC_FILE).write_text(plan.spec_yaml)
        runtime_env = {
            "working_dir": working_dir,
            "py_modules": [str(PROJECT_ROOT / package) for package in SHIPPED_PACKAGES],
            "excludes": SHIP_EXCLUDES,
            "env_vars": plan.env_vars,
        }
        echo(f"submitting {spec.kind} job {spec.name!r} to {target.address} as {plan.submission_id} "
             f"(code {total / 1024:.0f} KiB)")
        echo(where)
        _submit_with_retries(client, target, plan, runtime_env, placement)
    return plan.submission_id


def _submit_with_retries(client, target: ClusterTarget, plan: Submission, runtime_env: dict, placement: dict,
                         patience_seconds: float = 90.0) -> None:
    """Submit; while a fresh head's job agent is not up yet ("No available agent"), retry with backoff."""
    import time

    from jobs.submission.clusters import ClusterError

    deadline, pause = time.monotonic() + patience_seconds, 1.0
    while True:
        try:
            with translated_errors(target):
                client.submit_job(entrypoint=plan.entrypoint, submission_id=plan.submission_id,
                                  runtime_env=runtime_env, metadata=plan.metadata, **placement)
            return
        except ClusterError as exc:
            if "already exists" in exc.message:  # lost a race with another submitter
                _refuse_duplicate(client, target, plan.submission_id)
            if "No available agent" not in exc.message or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


def _refuse_duplicate(client, target: ClusterTarget, submission_id: str) -> None:

    existing = find_job(client, target, submission_id)
    if existing is not None:
        raise AlreadySubmittedError(
            f"job {submission_id} was already submitted to {target.address} (state {existing.status}); "
            f"nothing new was started. Follow it with `mediajobs logs {submission_id} --follow`, "
            "or pass --force to start another run")
