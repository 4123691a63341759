"""Job schedulers: materialise the next iteration when a scheduled job is fetched.

BullMQ job schedulers (``Queue.upsertJobScheduler``, used by
``QueueManager.schedule_recurring_analytics``) keep exactly one delayed job per
scheduler; the *worker* creates the following one when it fetches the current one
(Node's ``Worker.nextJobFromJobData``). We do the same with the installed ``bullmq``
package's own ``JobScheduler`` (cron parsing with croniter, ``every`` maths in Lua), so
iterations are computed exactly as ``bullmq`` computes them.

Legacy repeatable jobs (``repeat`` keys shaped ``name:id:endDate:tz:pattern``) are
only advanced when a scheduler record exists for them, like Node does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bullmq import Queue as BullQueue
from bullmq.job_scheduler import JobScheduler

from ..connection import AnyRedis

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger(__name__)


def has_legacy_key_shape(key: str) -> bool:
    """``name:id:endDate:tz:pattern`` (5 or more parts) — a pre-scheduler repeat key."""
    return key.count(":") >= 4


class SchedulerBridge:
    """Advances job schedulers of one queue through ``bullmq.JobScheduler``.

    Args:
        client: the worker's command client (shared; not closed here).
        prefix: the key prefix.
        queue: the queue name.
    """

    def __init__(self, client: AnyRedis, prefix: str, queue: str) -> None:
        self._client = client
        self._prefix = prefix
        self._queue_name = queue
        self._scheduler: Any = None

    def _get(self) -> Any:
        if self._scheduler is None:
            queue = BullQueue(self._queue_name, {"connection": self._client,
                                                 "prefix": self._prefix})
            self._scheduler = JobScheduler(queue)
        return self._scheduler

    async def schedule_next(self, job: Job) -> bool:
        """Upsert the next iteration of ``job``'s scheduler. Returns whether one was made."""
        key = job.repeat_job_key
        if not key:
            return False
        scheduler = self._get()
        if has_legacy_key_shape(key) and not await scheduler.isJobScheduler(key):
            log.warning("job %s of queue %s has legacy repeat key %r without a scheduler; "
                        "no next iteration is created", job.id, self._queue_name, key)
            return False
        made = await scheduler.upsertJobScheduler(
            key, job.opts.get("repeat"), job.name, job.data, dict(job.opts),
            override=False, producer_id=job.id)
        return made is not None
