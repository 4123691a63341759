"""Checking recipient rows: a small stand-in for ``campaigns.recipients``.

``recipients`` (the CSV/NDJSON readers, written separately) provides these same names
with the same signatures; ``Campaigns.send`` is written against them. Until it is merged
this module provides the part ``send`` needs — rows given as ``(row_number, mapping)``
pairs — and then it is to be deleted and ``manage`` imports from ``.recipients``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..errors import FieldError, JobValidationError
from ..jobs import Recipient, field_errors

_RECIPIENT = TypeAdapter(Recipient)
Row = tuple[int, Mapping[str, Any]]


@dataclass(frozen=True)
class RowError:
    """One bad recipient row: its number (1 = the first row), the field, the problem."""

    row: int
    field: str
    message: str


@dataclass
class RecipientCheck:
    """The outcome of checking every row once."""

    valid: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)
    errors_truncated: bool = False


class RecipientsError(JobValidationError):
    """Some recipient rows are invalid; ``rows`` lists them with their row numbers."""

    def __init__(self, rows: Sequence[RowError], truncated: bool = False) -> None:
        self.rows = list(rows)
        self.truncated = truncated
        super().__init__("recipients", [
            FieldError(f"row {r.row}: {r.field}", r.message) for r in self.rows])


def rows_from_iterable(items: Iterable[Recipient | Mapping[str, Any]]) -> list[Row]:
    """Number recipients from 1 (materialised, so the rows can be read twice)."""
    return [(n, item.to_wire() if isinstance(item, Recipient) else item)
            for n, item in enumerate(items, 1)]


def _checked(rows: Iterable[Row]) -> Iterator[tuple[int, dict[str, Any] | None,
                                                    list[RowError]]]:
    for number, row in rows:
        try:
            if not isinstance(row, Mapping):
                raise TypeError
            yield number, _RECIPIENT.validate_python(dict(row)).to_wire(), []
        except TypeError:
            yield number, None, [RowError(number, "row", "must be an object")]
        except ValidationError as exc:
            yield number, None, [RowError(number, e.path.removeprefix("(root)").lstrip("."),
                                          e.message) for e in field_errors(exc, Recipient)]


def check_recipients(rows: Iterable[Row], *, max_errors: int = 100) -> RecipientCheck:
    """Count valid rows and duplicate addresses, keep the first ``max_errors`` errors."""
    check = RecipientCheck()
    seen: set[str] = set()
    for _, wire, errors in _checked(rows):
        if wire is None:
            room = max_errors - len(check.errors)
            check.errors.extend(errors[:max(room, 0)])
            check.errors_truncated |= len(errors) > room
            continue
        key = str(wire["email"]).lower()
        if key in seen:
            check.duplicates += 1
        else:
            seen.add(key)
            check.valid += 1
    return check


def valid_recipients(rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    """The valid rows in wire form, each address once (the first row of it wins)."""
    seen: set[str] = set()
    for _, wire, _errors in _checked(rows):
        if wire is not None and (key := str(wire["email"]).lower()) not in seen:
            seen.add(key)
            yield wire
