"""The user-facing errors: the CLI prints these without a traceback (`USER_ERRORS`)."""

from __future__ import annotations

from cluster.errors import StackError, UserFacingError


class MediaJobsError(UserFacingError):
    """An error of the job layers the user can act on (the root under `jobs/`)."""


class SpecError(MediaJobsError):
    """A job spec (or a CLI override of it) is invalid."""

    headline = "invalid spec"
    exit_code = 2


class UsageError(MediaJobsError):
    """The command line is wrong in a way the parser cannot see."""

    headline = "bad usage"
    exit_code = 2


class StorageError(MediaJobsError):
    """Object storage is unreachable, misconfigured or refused a request."""

    headline = "storage error"



class IngestError(MediaJobsError):
    """The input of an ingest (a tarball or a folder) is missing or not what it should be."""

    headline = "cannot ingest"


class JobFailedError(MediaJobsError):
    """A job ran and failed (training crashed, error budget exceeded, ...)."""

    headline = "job failed"


def root_cause(exc: BaseException) -> str:
    """`Type: last line of the message` of the innermost cause: what a Ray-wrapped worker
    failure was really about, without Ray's layers of tracebacks."""
    while exc.__cause__ is not None:
        # Ray Data chains an empty `SystemException()` marker as the cause of failures it
        # thinks are internal; the exception it marks is the one that says what happened.
        if type(exc.__cause__).__name__ == "SystemException" and not str(exc.__cause__):
            break
        exc = exc.__cause__
    # Ray Data appends advice on retry settings to I/O errors ("Failed to write ... after
    # 10/10 attempts" and how to configure retries): keep the error and the attempt count.
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(_RAY_HINTS)]
    if kept and kept[-1].startswith(_RAY_RETRY_SUMMARY) and len(kept) > 1:
        return f"{type(exc).__name__}: {kept[0]} ({kept[-1]})"
    return f"{type(exc).__name__}: {kept[-1] if kept else ''}"


_RAY_HINTS = ("To change retry attempts", "This looks like an AWS S3 permissions error")
_RAY_RETRY_SUMMARY = "Failed to "


# What the CLI prints as one line (headline: message) with the error's exit code: the
# job layers' errors and the local stack's (`StackError`, re-exported here).
USER_ERRORS = (UserFacingError,)
__all__ = ["USER_ERRORS", "IngestError", "JobFailedError", "MediaJobsError", "SpecError", "StackError", "StorageError",
           "UsageError", "root_cause"]
