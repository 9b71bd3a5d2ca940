"""The local stack's one error. `cluster/` sits below `jobs/` and cannot subclass jobs' error
root, so this carries the same three things (`headline`, `exit_code`, `message`) and the CLI
prints it the same way (`jobs.errors.USER_ERRORS`)."""

from __future__ import annotations


class StackError(Exception):
    """The embedded local stack could not be started, reached or stopped."""

    headline = "local stack error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    # Exceptions cross Ray process boundaries; keep them picklable with one argument.
    def __reduce__(self):
        return (type(self), (self.message,))
