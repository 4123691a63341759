"""BullMQ's key layout for one queue: ``{prefix}:{queue}:{suffix}``.

The same layout ``bullmq.Queue(name, {"prefix": prefix})`` and Node BullMQ use, so the
engine works on queues filled by either. A hash-tag prefix such as ``{nlq}`` keeps all
of a queue's keys in one cluster slot, which the Lua scripts require.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from .states import JobState


def worker_name_prefix(prefix: str, queue: str) -> str:
    """``{prefix}:{base64(queue)}:w:`` — what a worker's client name starts with.

    Node BullMQ's ``Queue.getWorkers()`` (and Bull Board) find workers by it in
    ``CLIENT LIST``; the monitor does the same.
    """
    return f"{prefix}:{base64.b64encode(queue.encode()).decode()}:w:"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The Redis keys of one queue, built once."""

    prefix: str
    queue: str
    base: str = field(init=False)  # "{prefix}:{queue}:" — the scripts' key prefix argument

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", f"{self.prefix}:{self.queue}:")

    def key(self, suffix: str) -> str:
        """The key ``{prefix}:{queue}:{suffix}``."""
        return self.base + suffix

    def job(self, job_id: str) -> str:
        """The hash of job ``job_id``."""
        return self.base + job_id

    def logs(self, job_id: str) -> str:
        """The list of job ``job_id``'s log lines."""
        return f"{self.base}{job_id}:logs"

    def state(self, state: JobState) -> str:
        """The list or sorted set holding the jobs in ``state``."""
        return self.base + state.key_suffix

    @property
    def wait(self) -> str:
        return self.base + "wait"

    @property
    def active(self) -> str:
        return self.base + "active"

    @property
    def paused(self) -> str:
        return self.base + "paused"

    @property
    def prioritized(self) -> str:
        return self.base + "prioritized"

    @property
    def delayed(self) -> str:
        return self.base + "delayed"

    @property
    def completed(self) -> str:
        return self.base + "completed"

    @property
    def failed(self) -> str:
        return self.base + "failed"

    @property
    def events(self) -> str:
        return self.base + "events"

    @property
    def stalled(self) -> str:
        return self.base + "stalled"

    @property
    def stalled_check(self) -> str:
        return self.base + "stalled-check"

    @property
    def limiter(self) -> str:
        return self.base + "limiter"

    @property
    def meta(self) -> str:
        return self.base + "meta"

    @property
    def pc(self) -> str:
        return self.base + "pc"

    @property
    def marker(self) -> str:
        return self.base + "marker"

    @property
    def repeat(self) -> str:
        return self.base + "repeat"

    def metrics(self, kind: str) -> str:
        """``metrics:completed`` / ``metrics:failed`` (a hash; its ``:data`` is a list)."""
        return self.base + "metrics:" + kind
