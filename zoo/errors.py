"""One error type for everything a user can get wrong, rendered as one line that says where and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


@dataclass
class Problem:
    """One thing wrong with an input file.

    file: the file it is in; line: 1-based line, or None when the file has no lines to point at;
    field: dotted path of the field (``models.x.variants.y.recipe``), or "" for the whole file.
    """

    file: str
    line: int | None
    field: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        prefix = "warning: " if self.warning else ""
        field = f" {self.field}:" if self.field else ""
        return one_line(f"{where}:{field} {prefix}{self.message}")


def one_line(text: str) -> str:
    """Escape control characters (a YAML key can hold a newline) so that a message stays on one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class ZooError(Exception):
    """An error the user can fix; its text is one line (or one line per problem) and never a traceback."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str | None = None, problems: Iterable[Problem] = ()):
        self.problems = list(problems)
        super().__init__(message if message is not None else "\n".join(map(str, self.problems)))


class UsageError(ZooError):
    exit_code = EXIT_USAGE


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return " (did you mean 'x'?)" for the closest known name, else the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known: {', '.join(known)})" if known else ""
