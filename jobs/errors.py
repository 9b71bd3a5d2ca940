"""The one user-facing error root: the CLI prints these without a traceback."""

from __future__ import annotations


class MediaJobsError(Exception):
    """An error the user can act on: a short headline plus a message with the fix."""

    headline = "error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    # Exceptions cross Ray process boundaries; keep them picklable with one argument.
    def __reduce__(self):
        return (type(self), (self.message,))


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


class StackError(MediaJobsError):
    """The embedded local stack could not be started, reached or stopped."""

    headline = "local stack error"


class IngestError(MediaJobsError):
    """The input of an ingest (a tarball or a folder) is missing or not what it should be."""

    headline = "cannot ingest"


class JobFailedError(MediaJobsError):
    """A job ran and failed (training crashed, error budget exceeded, ...)."""

    headline = "job failed"
