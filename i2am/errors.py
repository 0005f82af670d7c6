"""The one class of expected user mistakes: a wrong config value, a missing file, a refused checkpoint or data root.

The CLI prints such an error as one paragraph without a traceback (``I2AM_TRACEBACK=1`` shows it, docs/cli.md); any
other exception is a bug and keeps its traceback. Subclasses also derive from the builtin they refine (ValueError,
FileNotFoundError, ...), so existing ``except`` clauses keep working.
"""
from __future__ import annotations

TRACEBACK_ENV = "I2AM_TRACEBACK"


class UserError(Exception):
    """An expected mistake of the user; the message names the key or file at fault and the fix."""


class UserFileError(UserError, FileNotFoundError):
    """A file or folder the user named is missing or is the wrong kind of path."""
