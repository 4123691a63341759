"""Retry delays: BullMQ's ``fixed`` and ``exponential`` strategies, jitter, custom ones.

A port of the semantics of Node BullMQ's ``Backoffs`` (``src/classes/backoffs.ts``),
because the ``bullmq`` Python package has no jitter and rounds nothing the way Node does:

- ``fixed``: ``delay``; with ``jitter`` j, uniform in ``[delay·(1-j), delay)``.
- ``exponential``: ``round(2^(attempts_made-1) · delay)``; with jitter the same
  ``[max·(1-j), max)`` window.
- any other ``type``: the worker's ``backoff_strategy(attempts_made, type, error, job)``
  (sync or async), returning milliseconds; ``-1`` means "do not retry, fail now".
- a job without ``backoff`` retries at once.

``attempts_made`` counts the attempt that just failed (1 after the first failure).
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from .job import Job

BackoffStrategy: TypeAlias = Callable[
    [int, str, BaseException, "Job"], "int | float | Awaitable[int | float]"
]
BUILTIN = ("fixed", "exponential")


def normalize(backoff: Any) -> dict[str, Any] | None:
    """An integer means ``fixed``; a dict is kept; anything else means "no backoff"."""
    if isinstance(backoff, bool):
        return None
    if isinstance(backoff, int | float) and math.isfinite(backoff):
        return {"type": "fixed", "delay": backoff}
    if isinstance(backoff, dict) and backoff:
        return backoff
    return None


def builtin_delay(kind: str, delay: float, jitter: float, attempts_made: int) -> int:
    """The delay of a built-in strategy (``fixed``/``exponential``) in ms."""
    base = delay if kind == "fixed" else round(2 ** (attempts_made - 1) * delay)
    if jitter > 0:
        jitter = min(jitter, 1.0)
        return math.floor(random.random() * base * jitter + base * (1 - jitter))
    return int(base)


async def compute_delay(
    backoff: Any,
    attempts_made: int,
    error: BaseException,
    job: Job,
    custom: BackoffStrategy | None,
) -> int | None:
    """The retry delay in ms, ``-1`` for "fail now", or ``None`` for "retry at once".

    Raises:
        ValueError: an unknown backoff type and no custom strategy.
    """
    opts = normalize(backoff)
    if opts is None:
        return None
    kind = str(opts.get("type") or "fixed")
    if kind in BUILTIN:
        return builtin_delay(kind, float(opts.get("delay") or 0),
                             float(opts.get("jitter") or 0), attempts_made)
    if custom is None:
        raise ValueError(
            f"unknown backoff strategy {kind!r}: pass backoff_strategy= to the Worker")
    value = custom(attempts_made, kind, error, job)
    if inspect.isawaitable(value):
        value = await value
    return int(value)
