"""Messages for the user: one line each on stderr, `surrogate-abc: note: ...`, never a source path.

Library code says what the user should know with `warn(message)`: a `Note` (a UserWarning), so that callers of
the library can catch or filter it like any warning. The command line runs each command inside
`notes_from_warnings()`, which shows every Python warning raised meanwhile (ours, numpy's, any library's) as
one such line, once, without the file/line prefix and the source line that Python's own display adds.
`notify(message)` writes a note directly (for messages that are not warnings, e.g. a library's log records).
"""
from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from typing import Iterator

PREFIX = "surrogate-abc: note: "


class Note(UserWarning):
    """A warning meant for the person running a command (shown by the CLI as a one-line note)."""


def one_line(message: object) -> str:
    """The message with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(message).split())


def notify(message: object) -> None:
    """Write `surrogate-abc: note: MESSAGE` (one line) to stderr."""
    print(PREFIX + one_line(message), file=sys.stderr, flush=True)


def warn(message: str, stacklevel: int = 1) -> None:
    """Raise a Note warning from library code; stacklevel counts from the caller of warn (1: the caller)."""
    warnings.warn(message, Note, stacklevel=stacklevel + 1)


@contextmanager
def notes_from_warnings() -> Iterator[None]:
    """Within the block every Python warning that the warning filters let through is written by `notify`
    (one line, no category, file or line, each text once); filters and display are restored afterwards."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # warnings.showwarning's signature
        text = one_line(message)
        if text not in seen:
            seen.add(text)
            notify(text)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
