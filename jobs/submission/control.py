"""Following submitted jobs: status, logs, stop, list, and waiting for the outcome.

Every function takes a `JobSubmissionClient` from `jobs.submission.clusters.jobs_client`. Jobs
submitted by `mediajobs submit` carry `mediajobs.*` metadata (spec name, kind, hash, run
date); other jobs on the cluster are listed too, with blanks there.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from jobs.errors import JobFailedError
from jobs.submission.clusters import ClusterError, ClusterTarget, translated_errors

# Jobs submitted by `mediajobs submit` carry their spec's name, kind, task, hash and run date
# under these metadata keys; status, list and the duplicate check read them back.
METADATA_PREFIX = "mediajobs."

__all__ = ["JobView", "find_job", "job_view", "list_jobs", "follow_logs", "job_logs", "wait_for_job", "stop_job",
           "TERMINAL_STATES"]

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class JobView:
    """What a person asks about a job; times are ISO 8601 UTC, None while not started or not ended."""

    submission_id: str
    spec_name: str | None
    kind: str | None
    spec_hash: str | None
    run_date: str | None
    state: str
    message: str
    start_time: str | None
    end_time: str | None
    entrypoint: str

    def to_json(self) -> dict:
        return asdict(self)


def _iso(milliseconds: int | None) -> str | None:
    if not milliseconds:
        return None
    return dt.datetime.fromtimestamp(milliseconds / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_view(details) -> JobView:
    """A `JobView` of Ray's `JobDetails`."""
    metadata = details.metadata or {}
    status = getattr(details.status, "value", details.status)
    return JobView(
        submission_id=details.submission_id or details.job_id or "",
        spec_name=metadata.get(f"{METADATA_PREFIX}spec_name"),
        kind=metadata.get(f"{METADATA_PREFIX}kind"),
        spec_hash=metadata.get(f"{METADATA_PREFIX}spec_hash"),
        run_date=metadata.get(f"{METADATA_PREFIX}run_date"),
        state=str(status),
        message=details.message or "",
        start_time=_iso(details.start_time),
        end_time=_iso(details.end_time),
        entrypoint=details.entrypoint,
    )


def find_job(client, target: ClusterTarget, job_id: str):
    """Ray's `JobDetails` of a job, or None when the cluster has no such job."""
    try:
        with translated_errors(target):
            return client.get_job_info(job_id)
    except ClusterError as exc:
        if "status code 404" in exc.message:
            return None
        raise


def _require_job(client, target: ClusterTarget, job_id: str):
    details = find_job(client, target, job_id)
    if details is None:
        raise ClusterError(f"no job {job_id!r} on the cluster at {target.address}; `mediajobs list` shows its jobs")
    return details


def describe_job(client, target: ClusterTarget, job_id: str) -> JobView:
    """The job's view. Raises ClusterError when there is no such job."""
    return job_view(_require_job(client, target, job_id))


def list_jobs(client, target: ClusterTarget) -> list[JobView]:
    """Every job the cluster knows, newest first."""
    with translated_errors(target):
        jobs = client.list_jobs()
    views = [job_view(j) for j in jobs if j.submission_id]  # drivers not submitted as jobs have no id
    return sorted(views, key=lambda v: v.start_time or "", reverse=True)


def job_logs(client, target: ClusterTarget, job_id: str) -> str:
    """The job's whole log so far."""
    _require_job(client, target, job_id)
    with translated_errors(target):
        return client.get_job_logs(job_id)


def follow_logs(client, target: ClusterTarget, job_id: str, write: Callable[[str], None]) -> None:
    """Stream the job's log (from its start) until the job ends."""
    _require_job(client, target, job_id)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    with translated_errors(target):
        asyncio.run(tail())


def wait_for_job(client, target: ClusterTarget, job_id: str, timeout: float | None = None,
                 poll_seconds: float = 1.0) -> JobView:
    """Poll until the job is in a terminal state (the log stream can end a moment earlier)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        view = describe_job(client, target, job_id)
        if view.state in TERMINAL_STATES:
            return view
        if deadline is not None and time.monotonic() > deadline:
            raise ClusterError(f"job {job_id} is still {view.state} after {timeout:.0f}s")
        time.sleep(poll_seconds)


def outcome(view: JobView) -> None:
    """Raise `JobFailedError` unless the job succeeded (exit code 1 for failed or stopped)."""
    if view.state != "SUCCEEDED":
        reason = view.message.strip().splitlines()[-1] if view.message.strip() else "no message"
        raise JobFailedError(f"job {view.submission_id} ended {view.state}: {reason}; "
                             f"`mediajobs logs {view.submission_id}` shows its log")


def stop_job(client, target: ClusterTarget, job_id: str, timeout: float = 60.0) -> JobView:
    """Ask the cluster to stop the job and wait (bounded) until it has."""
    view = describe_job(client, target, job_id)
    if view.state in TERMINAL_STATES:
        return view
    with translated_errors(target):
        client.stop_job(job_id)
    return wait_for_job(client, target, job_id, timeout=timeout, poll_seconds=0.5)
