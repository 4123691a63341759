"""A send's recipients, checked once and kept for reading back: the spool.

``spool_recipients`` makes the one pass over a source (``recipients.check_recipients``
with a ``keep`` callback) and writes the good rows — wire form, a JSON array per thousand
— to a temporary file as it goes: in memory up to ``SPOOL_MEMORY_BYTES``, then on disk in
the system's temporary directory (``TMPDIR``; about 100 bytes per recipient). Nothing is
enqueued before the whole input was checked, and the batches are then read back from the
spool without parsing or validating the input again, so a source that can be read only
once (an open handle, a generator, an upload) is fine.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO, Any

from .recipients import RecipientCheck, Row, check_recipients

SPOOL_MEMORY_BYTES = 8 * 2**20
"""How much of a send's checked recipients ``spool_recipients`` keeps in memory before its
spool moves to a temporary file."""
_SPOOL_CHUNK = 1000  # wire dicts per line of the spool (one JSON array each)


class SpooledRecipients:
    """The verdict of one pass (``check``) and the good rows it kept, in a temporary file.

    Iterating yields the wire dicts in input order, ``batches(n)`` lists of them (each
    pass reads the spool from its start, a thousand rows per ``json.loads``). A context
    manager: leaving it (or ``close``) deletes the spool.
    """

    def __init__(self, check: RecipientCheck, spool: IO[bytes]) -> None:
        self.check = check
        self._spool = spool

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches(_SPOOL_CHUNK):
            yield from batch

    def batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The wire dicts in lists of ``size`` (the last one shorter), from the start."""
        spool = self._spool
        spool.seek(0)
        pending: list[dict[str, Any]] = []
        for line in spool:
            pending.extend(json.loads(line))
            start = 0
            while len(pending) - start >= size:
                yield pending[start:start + size]
                start += size
            del pending[:start]
        if pending:
            yield pending

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> SpooledRecipients:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class SpoolStopped(Exception):
    """The pass was told to stop (``stop`` was set); nothing is left behind."""


def spool_recipients(rows: Iterable[Row], *, max_errors: int = 100,
                     memory_bytes: int = SPOOL_MEMORY_BYTES,
                     stop: threading.Event | None = None) -> SpooledRecipients:
    """``check_recipients`` and ``valid_recipients`` in one pass: the counts and errors,
    and the good rows (deduplicated, wire form) spooled for reading back — in memory up
    to ``memory_bytes``, then in a temporary file (see the module docstring).

    ``stop``, looked at before each row, ends the pass early: a caller running it in a
    thread sets it when it is cancelled, so the thread stops reading the source.

    Raises:
        RecipientsError: the source cannot be read at all (row 0); nothing is left
            behind.
        SpoolStopped: ``stop`` was set.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=memory_bytes, mode="w+b")  # noqa: SIM115
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        spool.write((json.dumps(pending, separators=(",", ":")) + "\n").encode("ascii"))
        pending.clear()

    def keep(wire: dict[str, Any]) -> None:
        pending.append(wire)
        if len(pending) >= _SPOOL_CHUNK:
            flush()

    def watched(source: Iterable[Row]) -> Iterator[Row]:
        for row in source:
            if stop.is_set():  # type: ignore[union-attr]
                raise SpoolStopped("the recipients' pass was stopped")
            yield row

    try:
        check = check_recipients(rows if stop is None else watched(rows),
                                 max_errors=max_errors, keep=keep)
        if pending:
            flush()
    except BaseException:
        spool.close()
        raise
    return SpooledRecipients(check, spool)
