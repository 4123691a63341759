"""Move jobs through BullMQ's own Lua scripts (via the bullmq package) in tests that
need finished jobs but are not about the worker: the states are the real ones."""

from __future__ import annotations

import uuid
from typing import Any

from bullmq import Job, Queue


async def take_next(queue: Queue) -> tuple[Job, str] | None:
    """Move the next waiting job to active, as a worker would. Returns (job, token)."""
    token = uuid.uuid4().hex
    result = await queue.backend.moveToActive(token, {"lockDuration": 30_000})
    if not result or not result[0]:
        return None
    raw, job_id = result[0], result[1]
    job = Job.fromJSON(queue, _decode(raw), str(job_id))
    return job, token


async def fail_next(queue: Queue, reason: str) -> str | None:
    """Fail the next waiting job for good (attempts exhausted). Returns its id."""
    taken = await take_next(queue)
    if taken is None:
        return None
    job, token = taken
    job.attemptsMade = job.attempts  # as if this was the last attempt
    await queue.backend.moveToFailed(job, reason, False, token, False)
    return str(job.id)


async def complete_next(queue: Queue, value: Any = None) -> str | None:
    taken = await take_next(queue)
    if taken is None:
        return None
    job, token = taken
    await queue.backend.moveToCompleted(job, value, False, token, False)
    return str(job.id)


def _decode(raw: Any) -> dict[Any, Any]:
    if isinstance(raw, dict):
        return {(k.encode() if isinstance(k, str) else k): (v.encode() if isinstance(v, str) else v)
                for k, v in raw.items()}
    out: dict[Any, Any] = {}
    for i in range(0, len(raw), 2):
        k, v = raw[i], raw[i + 1]
        out[k.encode() if isinstance(k, str) else k] = v.encode() if isinstance(v, str) else v
    return out
