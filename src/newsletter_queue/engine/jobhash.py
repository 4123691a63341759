"""The job hash: BullMQ's Redis hash of one job, parsed once for every reader.

BullMQ stores a job as a hash of strings with camelCase and abbreviated fields (``atm``
attempts made, ``ats`` attempts started, ``stc`` stalled count, ``pb`` processed by …).
The worker hands a processor a ``Job`` built from it, and the admin side shows a
``JobInfo`` built from it; both read the fields through ``parse_job_hash``.

The two differ in what a badly written hash means. The worker parses ``strict``: JSON
that does not decode or counters that are not numbers raise, and the worker fails the
job with that reason instead of running it. A reader parses leniently: the field shows
as it is stored (text instead of JSON, ``None`` instead of a number), so a dashboard can
still display the job that the worker refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, overload


@overload
def as_int(value: Any) -> int | None: ...
@overload
def as_int(value: Any, default: int) -> int: ...
def as_int(value: Any, default: int | None = None) -> int | None:
    """``value`` (a Redis string, ``"12"`` or ``"12.0"``) as an int; ``default`` when it
    is missing or not a finite number."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        pass
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return default


def _strict_int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return int(float(value))  # raises for text, and OverflowError for "inf"


def _json(value: str | None, default: Any, strict: bool) -> Any:
    if value is None or value == "":
        return default
    if strict:
        return json.loads(value)
    try:
        return json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested beyond what Python parses
        return value


@dataclass(frozen=True, slots=True)
class JobHash:
    """The fields of one job hash, typed. ``opts`` keeps BullMQ's stored option names."""

    name: str
    data: Any
    opts: dict[str, Any]
    timestamp: int | None
    delay: int
    priority: int
    progress: Any
    attempts_made: int
    attempts_started: int
    stalled_counter: int
    processed_on: int | None
    finished_on: int | None
    failed_reason: str | None
    stacktrace: list[str] = field(default_factory=list)
    return_value: Any = None
    processed_by: str | None = None
    deferred_failure: str | None = None
    repeat_job_key: str | None = None


def parse_job_hash(raw: Mapping[str, str], *, strict: bool = False) -> JobHash:
    """Parse ``HGETALL`` of a job.

    Raises (only when ``strict``):
        ValueError: data, options or progress are not JSON (``json.JSONDecodeError``),
            options are not an object, or a counter is not a number.
        RecursionError: JSON nested beyond what Python parses.
    """
    get = raw.get
    num = _strict_int if strict else as_int

    opts = _json(get("opts"), {}, strict) or {}
    if not isinstance(opts, dict):
        if strict:
            raise ValueError(f"job options are {type(opts).__name__}, not an object")
        opts = {}
    stack = _json(get("stacktrace"), [], False)
    return JobHash(
        name=raw.get("name", ""),
        data=_json(raw.get("data"), {}, strict),
        opts=opts,
        timestamp=num(get("timestamp")),
        delay=num(get("delay")) or 0,
        priority=num(get("priority")) or 0,
        progress=_json(get("progress"), 0, strict),
        attempts_made=num(get("atm") or get("attemptsMade")) or 0,
        attempts_started=num(get("ats")) or 0,
        stalled_counter=num(get("stc")) or 0,
        processed_on=num(get("processedOn")),
        finished_on=num(get("finishedOn")),
        failed_reason=raw.get("failedReason") or None,
        stacktrace=[str(s) for s in stack] if isinstance(stack, list) else [str(stack)],
        return_value=_json(raw.get("returnvalue"), None, False),
        processed_by=raw.get("pb") or None,
        deferred_failure=raw.get("defa") or None,
        repeat_job_key=raw.get("rjk") or None,
    )
