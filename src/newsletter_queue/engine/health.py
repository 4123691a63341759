"""Connection health shared by all tasks of one worker: back off, probe, resume.

When Redis goes away (restart, ``CLIENT KILL``, network), every slot, the lock renewer
and the stalled checker would otherwise retry on their own — a tight loop that floods
the log. Instead the first task to see a connection error marks Redis *down* and starts
one probe task; every task that needs Redis waits for the probe to succeed:

- the probe PINGs with exponential backoff (0.1 s doubling, capped at 2 s), so at most
  ~35 probes a minute and Redis is noticed within ~2 s of coming back;
- one warning when Redis goes down, one info line when it is back, and one reminder
  every 30 s while it stays down — never a line per failed command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..connection import is_cluster_outage

log = logging.getLogger(__name__)

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # includes BusyLoadingError
    RedisTimeoutError,
    ReadOnlyError,  # a replica promoted during failover: wait for the new primary
    ConnectionError,  # builtin: refused/reset
    TimeoutError,
    OSError,
)
PROBE_FIRST_S = 0.1
PROBE_MAX_S = 2.0
REMINDER_EVERY_S = 30.0


def is_connection_error(exc: BaseException) -> bool:
    """Errors that mean "Redis cannot be reached now" (wait for it, quietly)."""
    return isinstance(exc, CONNECTION_ERRORS) or is_cluster_outage(exc)


class ThrottledErrors:
    """Logs a repeating error once, then a count every ``every_s`` seconds.

    A worker that meets the same non-connection error on every turn (a full Redis
    refusing writes, a broken script) must not write a traceback per slot per second:
    the first occurrence is logged with its traceback, repeats are counted and
    summarised. The pause between attempts doubles up to ``max_pause_s``.
    """

    def __init__(self, queue: str, every_s: float = REMINDER_EVERY_S,
                 first_pause_s: float = 1.0, max_pause_s: float = 10.0) -> None:
        self.queue = queue
        self.every_s = every_s
        self.first_pause_s = first_pause_s
        self.max_pause_s = max_pause_s
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._streak = 0

    def record(self, what: str, exc: BaseException) -> float:
        """Log (or count) ``exc``; returns how long the caller should pause."""
        key = f"{type(exc).__name__}: {str(exc)[:200]}"
        now = asyncio.get_running_loop().time()
        last = self._last_logged.get(key)
        if last is None:
            log.error("queue %s: unexpected error while %s", self.queue, what, exc_info=exc)
            self._last_logged[key] = now
        elif now - last >= self.every_s:
            log.error("queue %s: still failing while %s (%d more times in %.0f s): %s",
                      self.queue, what, self._suppressed.get(key, 0) + 1, now - last, key)
            self._last_logged[key] = now
            self._suppressed[key] = 0
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
        pause: float = min(self.first_pause_s * 2.0 ** self._streak, self.max_pause_s)
        self._streak += 1
        return pause

    def ok(self) -> None:
        """A turn succeeded: the next error starts a new streak (short pause)."""
        self._streak = 0


class Health:
    """Up/down state of the Redis connection of one worker.

    Args:
        queue: for log lines.
        url: the masked URL, for log lines.
        probe: a cheap call that succeeds when Redis answers (``PING``).
        closing: set when the worker closes; waits end early.
    """

    def __init__(
        self,
        queue: str,
        url: str,
        probe: Callable[[], Awaitable[Any]],
        closing: asyncio.Event,
    ) -> None:
        self.queue = queue
        self.url = url
        self._probe = probe
        self._closing = closing
        self._up = asyncio.Event()
        self._up.set()
        self._probe_task: asyncio.Task[None] | None = None
        self.outages = 0
        self.probes = 0

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def report(self, exc: BaseException, where: str) -> None:
        """Note a connection error seen by ``where``; starts probing if Redis was up."""
        if not self._up.is_set() or self._closing.is_set():
            return
        self._up.clear()
        self.outages += 1
        log.warning("Redis unavailable at %s (queue %s, %s: %s); pausing and retrying "
                    "with backoff", self.url, self.queue, where, _describe(exc))
        self._probe_task = asyncio.get_running_loop().create_task(
            self._probe_until_up(), name=f"nlq-health-{self.queue}")
        self._probe_task.add_done_callback(_log_task_failure)

    async def wait_up(self, exc: BaseException, where: str) -> bool:
        """Report ``exc`` and wait until Redis answers again.

        Returns ``False`` if the worker started closing meanwhile.
        """
        self.report(exc, where)
        return await self.wait_until_up()

    async def wait_until_up(self) -> bool:
        if self._up.is_set():
            return True
        up = asyncio.ensure_future(self._up.wait())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({up, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            closing.cancel()
        return self._up.is_set()

    async def _probe_until_up(self) -> None:
        started = time.monotonic()
        last_note = started
        delay = PROBE_FIRST_S
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay * random.uniform(0.8, 1.2))
            if self._closing.is_set():
                break
            self.probes += 1
            try:
                await self._probe()
            except Exception as exc:
                if not is_connection_error(exc):
                    log.warning("Redis probe for queue %s failed: %s", self.queue,
                                _describe(exc))
                delay = min(delay * 2, PROBE_MAX_S)
                now = time.monotonic()
                if now - last_note >= REMINDER_EVERY_S:
                    last_note = now
                    log.warning("Redis at %s still unavailable after %.0f s (queue %s): %s",
                                self.url, now - started, self.queue, _describe(exc))
                continue
            log.info("Redis at %s is reachable again after %.1f s; queue %s resumes",
                     self.url, time.monotonic() - started, self.queue)
            self._up.set()
            return

    async def close(self) -> None:
        task, self._probe_task = self._probe_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _describe(exc: BaseException) -> str:
    from ..config import mask_url

    text = str(exc) or type(exc).__name__
    return mask_url(text) if "://" in text else text


def _log_task_failure(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background task %s failed", task.get_name(), exc_info=exc)
