"""The one error type for bad input: what a user can fix, as opposed to a bug in sb3-tar."""

from __future__ import annotations


class UserError(ValueError):
    """A setting, file or argument the user gave is not valid; the message names it and what is allowed.

    A ``ValueError``, so ``except ValueError`` still catches it. ``sb3-tar`` prints it as one line;
    any other exception is a bug and keeps its traceback.
    """


UserError.__module__ = "sb3_tar"  # a traceback's last line reads "sb3_tar.UserError: ...", its public name
