"""The root of every error a user can act on, in the lowest layer so `cluster/` and `jobs/`
share it (`cluster/` imports nothing from `jobs/`): a short headline, a message with the fix,
and the exit code. The CLI prints one as one line, without a traceback."""

from __future__ import annotations


class UserFacingError(Exception):
    """An error the user can act on: a short headline plus a message with the fix."""

    headline = "error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    # Exceptions cross Ray process boundaries; keep them picklable with one argument.
    def __reduce__(self):
        return (type(self), (self.message,))


class StackError(UserFacingError):
    """The embedded local stack could not be started, reached or stopped."""

    headline = "local stack error"
