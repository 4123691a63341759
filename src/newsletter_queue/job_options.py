"""Job options: what a producer may pass per job, checked before BullMQ sees it.

``JobOptions`` is snake_case; ``to_bullmq_options`` checks every option and returns
BullMQ's camelCase names. The checks exist because BullMQ's scripts take whatever they
get: a float delay, a priority past 2^21 or a count past a Lua double reached Redis as a
500 (or a job that never runs) instead of a 422 naming the option.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from .errors import FieldError, JobValidationError

MAX_PRIORITY = 2_097_152
# BullMQ's camelCase option names, accepted beside ours from HTTP clients.
_CAMEL_OPTIONS = {"jobId": "job_id", "removeOnComplete": "remove_on_complete",
                  "removeOnFail": "remove_on_fail"}


class JobOptions(TypedDict, total=False):
    """Per-job options (snake_case; translated to BullMQ's camelCase).

    ``delay`` in ms; ``priority`` 1 (highest) … 2,097,152; ``job_id`` makes the call
    idempotent (adding an existing id adds nothing); ``backoff`` is a delay in ms or
    ``{"type": "fixed"|"exponential", "delay": ms, "jitter": 0..1}``.
    """

    job_id: str
    delay: int
    priority: int
    attempts: int
    backoff: int | dict[str, Any]
    lifo: bool
    remove_on_complete: bool | int | dict[str, int]
    remove_on_fail: bool | int | dict[str, int]


_OPTION_NAMES = {
    "job_id": "jobId",
    "delay": "delay",
    "priority": "priority",
    "attempts": "attempts",
    "backoff": "backoff",
    "lifo": "lifo",
    "remove_on_complete": "removeOnComplete",
    "remove_on_fail": "removeOnFail",
}


def to_bullmq_options(opts: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``JobOptions`` and return BullMQ's camelCase job options."""
    if not opts:
        return {}
    problems: list[FieldError] = []
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if key not in _OPTION_NAMES:
            problems.append(FieldError(f"opts.{key}", f"unknown option; known: "
                                       f"{', '.join(_OPTION_NAMES)}"))
            continue
        problem = _OPTION_CHECKS[key](value)
        if problem:
            problems.append(FieldError(f"opts.{key}", problem))
        out[_OPTION_NAMES[key]] = value
    if problems:
        raise JobValidationError("JobOptions", problems)
    return out


def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    """An integer (not a bool) in ``low..high``."""
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _valid_job_id(value: Any) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= 200 and ":" not in value
            and not value.isdigit() and value.isprintable())


# Upper bounds of the numeric options: past them a number no longer fits the scripts'
# msgpack integers and Lua doubles (a 500 before), and means nothing anyway.
MAX_DELAY_MS = 10 * 365 * 24 * 3600 * 1000  # ten years, for delay and backoff delays
MAX_COUNT = 2**31 - 1  # attempts, and the counts and ages of removeOnComplete/-Fail


def _check_backoff(value: Any) -> str | None:
    message = ("must be a delay in ms (integer 0..{MAX_DELAY_MS}) or {type, delay?, jitter?} "
               "with a non-empty type, an integer delay 0..{MAX_DELAY_MS} and a jitter in 0..1"
               ).replace("{MAX_DELAY_MS}", str(MAX_DELAY_MS))
    if _is_int(value, 0, MAX_DELAY_MS):
        return None
    if not isinstance(value, Mapping) or set(value) - {"type", "delay", "jitter"}:
        return message
    kind, delay, jitter = value.get("type"), value.get("delay", 0), value.get("jitter", 0)
    jitter_ok = (isinstance(jitter, int | float) and not isinstance(jitter, bool)
                 and 0 <= jitter <= 1)
    if not (isinstance(kind, str) and kind and _is_int(delay, 0, MAX_DELAY_MS) and jitter_ok):
        return message
    return None


def _check_keep(value: Any) -> str | None:
    """removeOnComplete/removeOnFail: a bool, a count, or {age?, count?, limit?}."""
    if isinstance(value, bool) or _is_int(value, 0, MAX_COUNT):
        return None
    if (isinstance(value, Mapping) and not set(value) - {"age", "count", "limit"}
            and all(_is_int(v, 0, MAX_COUNT) for v in value.values())):
        return None
    return (f"must be true/false, a number of jobs to keep (0..{MAX_COUNT}) or "
            f"{{age?, count?, limit?}} with integers 0..{MAX_COUNT} (age in seconds)")


_OPTION_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "job_id": lambda v: None if _valid_job_id(v) else
    "must be a non-numeric string without ':' (max 200 chars)",
    "delay": lambda v: None if _is_int(v, 0, MAX_DELAY_MS) else
    f"must be an integer 0..{MAX_DELAY_MS} (ms, at most ten years)",
    "priority": lambda v: None if _is_int(v, 0, MAX_PRIORITY) else
    f"must be an integer 0..{MAX_PRIORITY}",
    "attempts": lambda v: None if _is_int(v, 1, MAX_COUNT) else
    f"must be an integer 1..{MAX_COUNT}",
    "backoff": _check_backoff,
    "lifo": lambda v: None if isinstance(v, bool) else "must be true or false",
    "remove_on_complete": _check_keep,
    "remove_on_fail": _check_keep,
}


def from_wire_names(opts: Mapping[str, Any]) -> JobOptions:
    """``opts`` with BullMQ's camelCase names (``jobId`` …) renamed to ours; the rest
    unchanged, for ``to_bullmq_options`` to check."""
    return {_CAMEL_OPTIONS.get(k, k): v for k, v in opts.items()}  # type: ignore[return-value]
