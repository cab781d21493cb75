"""The one exception type the CLI turns into a one-line message.

Library code raises `GolfError` (or a subclass) for anything the user can fix: a corrupt shard,
a missing file, a wrong tokenizer. The CLI prints `golf: error: <message>` and exits 2, so a
user never sees a traceback for bad input. Bugs still raise ordinary exceptions.
"""

from __future__ import annotations


class GolfError(Exception):
    """A user-facing error; its message is one line that says what is wrong and what to do."""


def os_error_line(exc: OSError) -> str:
    """An OSError as one line, 'No space left on device: out/x.bin', without errno noise."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{what}: {where}" if where else what


def one_line(text: str) -> str:
    """`text` with control characters escaped: a message quoting a hostile file (a key holding a
    newline, say) still prints as exactly one line."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
