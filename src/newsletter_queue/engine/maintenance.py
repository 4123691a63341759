"""Lock renewal and stalled-job checks: the two timers every BullMQ worker runs.

- **Locks**: each running job has ``{job}:lock`` (PX ``lock_duration``) holding this
  worker's token. Every half lock duration, *one* ``extendLocks`` call renews all of
  them (and removes them from the ``stalled`` set) — not one call per job, so 100
  running jobs cost one round trip per tick. A job whose lock could not be renewed is
  dropped from renewal and reported (``error`` hook): another worker may run it again.
- **Stalls**: every ``stalled_interval`` (first at start-up) ``moveStalledJobsToWait``
  moves jobs that sat in ``active`` without a lock for a whole interval back to wait
  (or marks them failed after ``max_stalled_count`` stalls: "job stalled more than
  allowable limit"). The script gates itself with the ``stalled-check`` key, so many
  workers together still check once per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .commands import QueueCommands
from .errors import JobLockLostError
from .health import Health, is_connection_error

log = logging.getLogger(__name__)

_RELEASE_TIMEOUT_S = 5.0


class LockKeeper:
    """Renews the locks of one worker's running jobs and runs its stalled checks.

    Args:
        queue: for log lines.
        commands: the queue's script calls.
        health: shared outage state (errors are reported, never waited on here).
        emit: awaits the worker's hooks.
        on_stalled: called with each job id moved back to wait.
    """

    def __init__(
        self,
        queue: str,
        commands: QueueCommands,
        health: Health,
        emit: Callable[..., Awaitable[None]],
        *,
        lock_duration_ms: int,
        stalled_interval_ms: int,
        max_stalled_count: int,
        on_stalled: Callable[[str], Any],
    ) -> None:
        self.queue = queue
        self.commands = commands
        self.health = health
        self.emit = emit
        self.lock_duration_ms = lock_duration_ms
        self.stalled_interval_ms = stalled_interval_ms
        self.max_stalled_count = max_stalled_count
        self.on_stalled = on_stalled
        self.locks: dict[str, str] = {}  # job id → token
        self.renewals = 0

    def track(self, job_id: str, token: str) -> None:
        self.locks[job_id] = token

    def release(self, job_id: str) -> None:
        self.locks.pop(job_id, None)

    async def renew_forever(self, stop: asyncio.Event) -> None:
        """Renew all tracked locks every half lock duration until ``stop``."""
        interval = self.lock_duration_ms / 2000
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if not stop.is_set() and self.locks:
                await self.renew()

    async def renew(self) -> None:
        ids = list(self.locks)
        tokens = [self.locks[i] for i in ids]
        try:
            lost = await self.commands.extend_locks(ids, tokens)
        except Exception as exc:
            if is_connection_error(exc):
                self.health.report(exc, "renewing locks")
            else:
                log.exception("queue %s: renewing %d lock(s) failed", self.queue, len(ids))
                await self.emit("error", exc)
            return
        self.renewals += 1
        for job_id in lost:
            if self.locks.pop(job_id, None) is not None:
                log.warning("queue %s: could not renew the lock of job %s; another worker "
                            "may process it again", self.queue, job_id)
                await self.emit("error", JobLockLostError(self.queue, job_id, -2, "extendLocks"))

    async def check_stalled_forever(self, stop: asyncio.Event) -> None:
        """Run a stalled check now and then every ``stalled_interval_ms`` until ``stop``."""
        # The script gates itself with the 'stalled-check' key (PX = the interval); a
        # check timed exactly one interval later often finds that key still alive and
        # is skipped, doubling the time crashed jobs wait. A small margin avoids that.
        # Likewise a check gated by another worker's key (a crashed worker's, at
        # start-up) runs again as soon as that key expires, not a whole interval later:
        # the next check is timed from the gate's remaining lifetime.
        interval = self.stalled_interval_ms / 1000
        margin = max(0.02, min(0.1, interval * 0.05))
        while not stop.is_set():
            await self.check_stalled()
            wait = interval + margin
            with contextlib.suppress(Exception):  # a lost connection: plain interval
                gate_ms = await self.commands.stalled_gate_ms()
                if gate_ms:
                    wait = min(wait, gate_ms / 1000 + margin)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def check_stalled(self) -> list[str]:
        try:
            stalled = await self.commands.move_stalled_jobs_to_wait(
                self.max_stalled_count, self.stalled_interval_ms)
        except Exception as exc:
            if is_connection_error(exc):
                self.health.report(exc, "checking stalled jobs")
            else:
                log.exception("queue %s: stalled-job check failed", self.queue)
                await self.emit("error", exc)
            return []
        for job_id in stalled:
            log.warning("queue %s: job %s stalled (its worker stopped renewing the lock); "
                        "moved back to wait", self.queue, job_id)
            self.on_stalled(job_id)
            await self.emit("stalled", job_id)
        return stalled


async def hand_back(queue: str, commands: QueueCommands | None,
                    leftovers: dict[str, str]) -> None:
    """Put jobs a closing worker still holds (``{job id: lock token}``) back in wait.

    Without ``commands`` (a close that must not write) they stay active and are
    recovered as stalled once their locks expire; that is said in the log either way.
    """
    if not leftovers:
        return
    if commands is None:
        log.warning("queue %s: left %d unfinished job(s) active (%s); they are recovered "
                    "as stalled once their locks expire", queue, len(leftovers),
                    ", ".join(leftovers))
        return
    for job_id, token in leftovers.items():
        try:
            await asyncio.wait_for(commands.move_to_wait(job_id, token), _RELEASE_TIMEOUT_S)
            log.warning("queue %s: job %s did not finish before close; moved back to wait",
                        queue, job_id)
        except Exception as exc:
            log.warning("queue %s: could not move unfinished job %s back to wait (%s); it "
                        "is recovered as stalled once its lock expires", queue, job_id, exc)
