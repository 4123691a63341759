"""Recipient input: CSV, NDJSON and Python iterables, checked row by row and streamed.

A campaign's recipients arrive as a file (the CLI, an HTTP upload) or as Python objects.
This module turns each into numbered rows, checks every row against the ``Recipient``
model, collapses duplicate addresses and reports bad rows with the number a user can
find them by — without ever holding a whole file in memory, so a 1,000,000-row CSV is
read in bounded memory (``bench/recipients.py`` measures it).

Written by hand rather than with a data-loading library: the standard library's ``csv``
and ``json`` modules do the parsing; what is ours is the part no library does for us —
the row numbers, the per-row verdicts of our own model, the bounded dedupe, the caps on
hostile input and the streaming.

A send reads its rows once, through ``spool.spool_recipients`` (checked and kept in one
pass).

Sources
    ``rows_from_csv``: a header row is required. It must have an ``email`` column
    (matched case-insensitively, surrounding spaces ignored); ``name`` is optional;
    every other column becomes a personalisation field (``Recipient.personalizations``,
    keyed by the column name as written). Row 1 is the first line *after the header*;
    blank lines (and rows whose cells are all empty) are skipped but counted, so without
    quoted line breaks row *n* is line *n + 1* of the file. A UTF-8 BOM is ignored.
    ``rows_from_ndjson``: one JSON object per line (the ``Recipient`` wire form); line 1
    is the first line of the file, blank lines are skipped but counted.
    ``rows_from_iterable``: ``Recipient`` objects or mappings; row 1 is the first item.

    A ``str`` or ``Path`` source is a file path: the rows are re-iterable (each pass
    re-opens the file). An open file (text or binary) is read once.

Row numbers in ``RowError`` are those above; row 0 is the file itself (no header, no
``email`` column, a UTF-16 file) — such a problem is raised as ``RecipientsError`` when
the rows are first iterated, because no row of that file can be read.

Hostile input is a ``RowError``, never a traceback: a line over ``MAX_LINE_BYTES`` (the
rest of the line is skipped unread, so a 10 MB field costs no 10 MB), bytes that are not
UTF-8 (the message gives the byte offset in the file), NUL characters, a row with the
wrong number of cells, a personalisation value over ``MAX_FIELD_CHARS``, an NDJSON line
that is not a JSON object. ``csv.field_size_limit`` is left at the interpreter's value
(it is process-wide); the line cap sits below its default, and a quoted field that runs
over several lines past it is reported as that row's error.

Duplicates are found with a set of 8-byte BLAKE2b digests of the lower-cased address
(as ints), not the addresses: about 70 bytes per unique recipient. Two different
addresses share a digest with a probability of about 3e-8 in a million-row send; the
later one would then be dropped as a duplicate.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from ..errors import FieldError, JobValidationError
from ..jobs import Recipient, field_errors

MAX_LINE_BYTES = 64 * 1024
"""Longest line read (CSV line or NDJSON object; characters for a text handle); a longer
one is its row's error."""
MAX_FIELD_CHARS = 4096
"""Longest personalisation value (its JSON text when it is not a string)."""
WHOLE_ROW = "(row)"
"""``RowError.field`` of a problem that concerns the whole row, not one field."""

Row = tuple[int, Mapping[str, Any]]
Source = str | Path | IO[str] | IO[bytes]


@dataclass(frozen=True)
class RowError:
    """One problem of one input row: ``row`` as numbered in the module docstring (CSV
    data rows from 1 after the header, NDJSON lines from 1, items from 1; 0 = the file),
    ``field`` (``email``, ``name``, a personalisation key, or ``(row)``)."""

    row: int
    field: str
    message: str

    def __str__(self) -> str:
        where = "the file" if self.row == 0 else f"row {self.row}"
        return f"{where}: {self.message}" if self.field == WHOLE_ROW else \
            f"{where}, {self.field}: {self.message}"


class RecipientsError(JobValidationError):
    """Recipient input has bad rows (or cannot be read at all: row 0).

    ``rows`` lists the problems found (at most the caller's ``max_errors``), ``truncated``
    says there were more. The message names the first few rows; ``errors`` (inherited)
    holds one ``FieldError`` per row problem, path ``row N.field``.
    """

    SHOWN = 5

    def __init__(self, rows: Sequence[RowError], truncated: bool = False) -> None:
        self.rows = list(rows)
        self.truncated = truncated
        super().__init__("recipients", [
            FieldError(f"row {r.row}" if r.field == WHOLE_ROW else f"row {r.row}.{r.field}",
                       r.message) for r in self.rows])
        shown = "; ".join(str(r) for r in self.rows[: self.SHOWN])
        more = len(self.rows) - self.SHOWN
        if more > 0:
            shown += f"; and {more} more" + (" (more not listed)" if truncated else "")
        elif truncated:
            shown += "; and more not listed"
        self.args = (f"invalid recipients: {shown}",)


@dataclass
class RecipientCheck:
    """The verdict of one pass over recipient rows: ``valid`` unique good rows,
    ``duplicates`` good rows whose address came earlier, the first ``errors``."""

    valid: int
    duplicates: int
    errors: list[RowError]
    errors_truncated: bool

    def raise_for_errors(self) -> None:
        """Raise ``RecipientsError`` if any row was bad."""
        if self.errors:
            raise RecipientsError(self.errors, self.errors_truncated)


class UnreadableRow(dict[str, Any]):
    """A row that could not be read (bad bytes, wrong cell count, not JSON): an empty
    dict carrying its problems as ``(field, message)`` pairs."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__()
        self.problems = [(field, message)]


# --- reading lines ---------------------------------------------------------------------
class _Lines:
    """The lines of an open file, bounded and decoded; a line that cannot be used is
    replaced by a bare newline and ``problem`` says why (the row reader asks after each
    row, so the problem lands on the row that contained the line)."""

    def __init__(self, handle: IO[str] | IO[bytes]) -> None:
        self.handle = handle
        self.problem: str | None = None
        self.last = ""
        self.count = 0

    def take_problem(self) -> str | None:
        problem, self.problem = self.problem, None
        return problem

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._read()
        except UnicodeDecodeError as exc:  # a text handle's own decoding failed
            raise _file_error(f"cannot be decoded after line {self.count}: {exc.reason}; "
                              "pass the file in binary mode or save it as UTF-8") from None

    def _read(self) -> Iterator[str]:
        offset = 0
        first = True
        readline = self.handle.readline
        while raw := readline(MAX_LINE_BYTES + 1):
            self.count += 1
            start = offset
            offset += len(raw)
            if first:
                first = False
                raw, skipped = _strip_bom(raw)
                start += skipped
            if len(raw) > MAX_LINE_BYTES and raw[-1:] not in ("\n", b"\n", "\r"):
                while (chunk := readline(MAX_LINE_BYTES)) and chunk[-1:] not in (
                        "\n", b"\n", "\r"):
                    offset += len(chunk)
                offset += len(chunk)
                self.problem = f"line longer than {MAX_LINE_BYTES} bytes (skipped)"
                self.last = "\n"
                yield "\n"
                continue
            try:
                self.last = raw if isinstance(raw, str) else raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problem = (f"not UTF-8: byte 0x{raw[exc.start]:02x} at byte offset "
                                f"{start + exc.start} of the file; save the file as UTF-8")
                self.last = "\n"
            yield self.last


def _strip_bom(raw: str | bytes) -> tuple[str | bytes, int]:
    if isinstance(raw, str):
        return (raw[1:], 1) if raw.startswith("\ufeff") else (raw, 0)
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise RecipientsError([RowError(0, WHOLE_ROW, "the file is UTF-16; save it as UTF-8")])
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
    return raw, 0


class _FileRows:
    """Rows of a file source: a path is re-opened by every iteration, a handle read once."""

    def __init__(self, source: Source, parse: Callable[[_Lines], Iterator[Row]]) -> None:
        self.source = source
        self.parse = parse

    def __iter__(self) -> Iterator[Row]:
        if isinstance(self.source, str | Path):
            with open(self.source, "rb") as handle:
                yield from self.parse(_Lines(handle))
        else:
            yield from self.parse(_Lines(self.source))


def _file_error(message: str, field: str = WHOLE_ROW) -> RecipientsError:
    return RecipientsError([RowError(0, field, message)])


# --- CSV -------------------------------------------------------------------------------
def rows_from_csv(source: Source) -> Iterable[Row]:
    """The data rows of a CSV file with a header (see the module docstring): ``(row,
    {"email", "name"?, "personalizations"?})``; unreadable rows as ``UnreadableRow``.

    Raises (when iterated):
        RecipientsError: the file cannot be used at all (empty, no ``email`` column, a
            duplicate or unnamed column, UTF-16), as row 0.
    """
    return _FileRows(source, _parse_csv)


def _parse_csv(lines: _Lines) -> Iterator[Row]:
    feed = iter(lines)
    reader = csv.reader(feed)
    header: list[str] = []
    while not header:
        try:
            record = next(reader)
        except StopIteration:
            raise _file_error("the file is empty: a header row with an 'email' column "
                              "is needed") from None
        except csv.Error as exc:
            raise _file_error(f"the header row cannot be read: {exc}") from None
        if problem := lines.take_problem():
            raise _file_error(f"the header row: {problem}")
        if any(cell.strip() for cell in record):
            header = [cell.strip() for cell in record]
    email, name, extras = _columns(header)
    number = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            _skip_quoted_rest(lines, feed)
            lines.take_problem()
            number += 1
            yield number, UnreadableRow(WHOLE_ROW, f"cannot be read as CSV: {exc}")
            continue
        number += 1
        if problem := lines.take_problem():
            yield number, UnreadableRow(WHOLE_ROW, problem)
        elif len(record) != len(header):
            if any(cell.strip() for cell in record):
                yield number, UnreadableRow(
                    WHOLE_ROW, f"{len(record)} cells; the header has {len(header)} columns")
        elif any(cell.strip() for cell in record):
            row: dict[str, Any] = {"email": record[email].strip()}
            if name is not None and (value := record[name].strip()):
                row["name"] = value
            if extras:
                row["personalizations"] = {key: record[i] for key, i in extras}
            yield number, row


def _skip_quoted_rest(lines: _Lines, feed: Iterator[str]) -> None:
    """After the csv module gave up on a field (its size limit), skip to where that field
    ends, so its remaining lines are not read as rows of their own.

    Only a quoted field spanning lines can outgrow the limit (one line is at most
    ``MAX_LINE_BYTES``), and inside it quotes come in pairs: the line that closes it is
    the first with an odd number of ``"`` — possibly the line that failed.
    """
    line: str | None = lines.last
    while line is not None and line.count('"') % 2 == 0:
        line = next(feed, None)


def _columns(header: list[str]) -> tuple[int, int | None, list[tuple[str, int]]]:
    """Where the email and name columns are, and the personalisation columns."""
    seen: set[str] = set()
    for position, column in enumerate(header, 1):
        if not column:
            raise _file_error(f"column {position} of the header has no name", "(header)")
        if column.lower() in seen:
            raise _file_error(f"column {column!r} appears twice in the header", "(header)")
        if "\x00" in column:
            raise _file_error("the header contains NUL characters: is the file UTF-16 or "
                              "binary?", "(header)")
        seen.add(column.lower())
    lowered = [column.lower() for column in header]
    if "email" not in lowered:
        raise _file_error(f"the header has no 'email' column (it has: "
                          f"{', '.join(header)[:200]})", "email")
    email = lowered.index("email")
    name = lowered.index("name") if "name" in lowered else None
    extras = [(column, i) for i, column in enumerate(header) if i not in (email, name)]
    return email, name, extras


# --- NDJSON ----------------------------------------------------------------------------
def rows_from_ndjson(source: Source) -> Iterable[Row]:
    """The objects of an NDJSON file, numbered by line from 1 (blank lines skipped)."""
    return _FileRows(source, _parse_ndjson)


def _parse_ndjson(lines: _Lines) -> Iterator[Row]:
    for number, line in enumerate(lines, 1):
        if problem := lines.take_problem():
            yield number, UnreadableRow(WHOLE_ROW, problem)
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, UnreadableRow(WHOLE_ROW, f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
            yield number, UnreadableRow(WHOLE_ROW, f"not usable JSON: {str(exc)[:120]}")
            continue
        if isinstance(value, dict):
            yield number, value
        else:
            yield number, UnreadableRow(
                WHOLE_ROW, f"not a JSON object but {type(value).__name__}")


# --- Python objects --------------------------------------------------------------------
def rows_from_iterable(items: Iterable[Recipient | Mapping[str, Any]]) -> Iterable[Row]:
    """Recipients given as objects, numbered from 1; materialised, so re-iterable."""
    rows: list[Row] = []
    for number, item in enumerate(items, 1):
        if isinstance(item, Recipient):
            rows.append((number, item.to_wire()))
        elif isinstance(item, Mapping):
            rows.append((number, dict(item)))
        else:
            rows.append((number, UnreadableRow(
                WHOLE_ROW, f"expected a recipient object, got {type(item).__name__}")))
    return rows


# --- checking --------------------------------------------------------------------------
def check_recipients(rows: Iterable[Row], *, max_errors: int = 100,
                     keep: Callable[[dict[str, Any]], object] | None = None
                     ) -> RecipientCheck:
    """One pass over ``rows``: counts and the first ``max_errors`` problems; ``keep``, if
    given, receives each good row's wire dict (deduplicated) as the pass goes. Memory is
    the dedupe set (see the module docstring) and the kept errors, whatever the row count.

    Raises:
        RecipientsError: the source cannot be read at all (row 0).
    """
    valid = duplicates = 0
    errors: list[RowError] = []
    truncated = False
    for number, wire, problems in _screened(rows):
        if wire is not None:
            valid += 1
            if keep is not None:
                keep(wire)
        elif not problems:
            duplicates += 1
        for field, message in problems:
            if len(errors) < max_errors:
                errors.append(RowError(number, field, message))
            else:
                truncated = True
    return RecipientCheck(valid, duplicates, errors, truncated)


def valid_recipients(rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    """The good rows as wire dicts (``Recipient.to_wire()``), each address once (the
    first row wins, compared case-insensitively); bad rows are skipped."""
    for _, wire, _ in _screened(rows):
        if wire is not None:
            yield wire


def _screened(rows: Iterable[Row]) -> Iterator[tuple[int, dict[str, Any] | None,
                                                     list[tuple[str, str]]]]:
    """``(row, wire, problems)`` per row: wire is None for a bad row (problems say why)
    and for a duplicate (no problems)."""
    seen: set[int] = set()
    for number, row in rows:
        wire, problems = _verdict(row)
        if wire is None:
            yield number, None, problems
            continue
        digest = int.from_bytes(hashlib.blake2b(
            wire["email"].lower().encode("utf-8", "surrogatepass"), digest_size=8).digest())
        if digest in seen:
            yield number, None, []
        else:
            seen.add(digest)
            yield number, wire, []


def _verdict(row: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    if isinstance(row, UnreadableRow):
        return None, row.problems
    problems: list[tuple[str, str]] = []
    personal = row.get("personalizations")
    try:
        if isinstance(personal, Mapping):
            problems.extend(_value_problems(personal))
        recipient = Recipient.model_validate(row)
    except ValidationError as exc:
        problems.extend((e.path.removeprefix("personalizations."), e.message)
                        for e in field_errors(exc, Recipient))
    except (ValueError, TypeError, RecursionError) as exc:  # values beyond inspection
        problems.append((WHOLE_ROW, f"cannot be checked: {str(exc)[:120]}"))
    if problems:
        return None, problems
    return recipient.to_wire(), []


def _value_problems(personal: Mapping[Any, Any]) -> Iterator[tuple[str, str]]:
    for key, value in personal.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > MAX_FIELD_CHARS:
            yield str(key), f"longer than {MAX_FIELD_CHARS} characters"
        elif "\x00" in text:
            yield str(key), "contains a NUL character"
