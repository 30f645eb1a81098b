"""The one kind of error a user can fix, shown as one line: what every layer above raises."""

from __future__ import annotations


class RecipeError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message: what a one-line error shows of a library's long one."""
    return (str(error).strip().splitlines() or [""])[0]
