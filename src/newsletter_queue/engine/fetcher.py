"""When to ask Redis for a job, and how to wait in between (BullMQ's marker protocol).

BullMQ producers ``ZADD`` a *marker* to ``{queue}:marker`` whenever work appears:
member ``"0"`` with score 0 means "a job is waiting"; member ``"1"`` with score *t*
means "a delayed job is due at *t*". An idle worker ``BZPOPMIN``s the marker on a
dedicated connection and calls ``moveToActive`` when woken. This module owns that
protocol for one worker:

- **Slots fetch one at a time.** A slot whose job finished normally gets its next job
  from ``moveToFinished`` (``fetchNext``) without coming here; only idle slots do, and
  they take an ``asyncio.Lock`` so at most one ``moveToActive`` and at most one
  ``BZPOPMIN`` are in flight — no thundering herd when one job arrives for 100 idle
  slots.
- **Delays are timed on the client.** Redis (``hz 10``) wakes a ``BZPOPMIN`` timeout up
  to ~100 ms late, and ``bullmq.Worker`` rounds timeouts up to whole seconds. Here the
  ``BZPOPMIN`` only listens for markers (timeout = the drain delay) while an asyncio
  timer fires at the exact due time of the next delayed job; the pending ``BZPOPMIN``
  is kept for the next wait instead of being cancelled.
- **Rate limits wait for the limiter's TTL**, not for a drain delay: a 5/1000 ms limiter
  resumes right when the window ends.
- A watchdog abandons (disconnects) a ``BZPOPMIN`` that outlives its timeout by 5 s,
  so a half-open connection cannot park the worker for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from ..connection import AnyRedis
from .commands import NextJob, QueueCommands, now_ms

log = logging.getLogger(__name__)

WATCHDOG_GRACE_S = 5.0
MAX_BLOCK_S = 10.0


class Fetcher:
    """Fetch state of one worker: drained, next delayed timestamp, rate limit.

    Args:
        commands: the queue's script calls (command connection).
        blocking: the dedicated blocking client (``BZPOPMIN`` only).
        drain_delay_ms: the longest ``BZPOPMIN`` when nothing is known to be due.
        closing: set when the worker stops fetching.
        on_drained: awaited when the queue becomes empty.
        double_timeout: the server takes fractional timeouts (Redis ≥ 6.0).
    """

    def __init__(
        self,
        commands: QueueCommands,
        blocking: AnyRedis,
        *,
        drain_delay_ms: int,
        closing: asyncio.Event,
        on_drained: Callable[[], Awaitable[None]],
        double_timeout: bool = True,
    ) -> None:
        self._commands = commands
        self._blocking = blocking
        self._marker = commands.keys.marker
        self._drain_delay_s = min(drain_delay_ms / 1000, MAX_BLOCK_S)
        self._closing = closing
        self._on_drained = on_drained
        self._double_timeout = double_timeout
        self._lock = asyncio.Lock()
        self._bzpop: asyncio.Task[Any] | None = None
        self._closing_wait: asyncio.Future[Any] | None = None
        self.drained = False
        self.block_until = 0
        self.limit_until = 0
        self.marker_waits = 0

    # --- state ---------------------------------------------------------------------------
    def note(self, nxt: NextJob) -> bool:
        """Record a script's answer. Returns True when the queue just became drained."""
        self.limit_until = now_ms() + nxt.rate_limit_ms if nxt.rate_limit_ms > 0 else 0
        self.block_until = max(nxt.delay_until, 0)
        if nxt.raw is not None:
            self.drained = False
            return False
        if nxt.rate_limit_ms > 0 or self.drained:
            return False
        self.drained = True
        return True

    def note_unknown(self) -> None:
        """A call changed the queue without telling us what is next: look, don't wait."""
        self.drained = False

    def rate_limited(self, ms: int) -> None:
        """Stop fetching for ``ms`` (``Worker.rate_limit``, ``RateLimited``)."""
        if ms > 0:
            self.limit_until = max(self.limit_until, now_ms() + ms)

    # --- fetching ------------------------------------------------------------------------
    async def next(self, packed_fetch_opts: bytes) -> NextJob | None:
        """Wait for and fetch the next job; ``None`` once the worker is closing.

        Connection errors propagate (the caller waits for Redis and calls again).
        """
        while not self._closing.is_set():
            if self.limit_until > now_ms():
                await self._sleep_until(self.limit_until)
                # Like Node: after a rate-limit pause, look before waiting on the marker.
                self.drained = False
                continue
            async with self._lock:
                if self._closing.is_set():
                    return None
                if self.limit_until > now_ms():
                    continue
                if self.drained and not await self._wait_for_work():
                    continue
                nxt = await self._commands.move_to_active(packed_fetch_opts)
                became_drained = self.note(nxt)
            if became_drained:
                await self._on_drained()
            if nxt.raw is not None:
                return nxt
        return None

    async def _wait_for_work(self) -> bool:
        """Wait on the marker and/or the next delayed job's due time.

        Returns True when ``moveToActive`` should be called now.
        """
        now = now_ms()
        timer: float | None = None
        if self.block_until:
            remaining = self.block_until - now
            if remaining <= 0:
                self.block_until = 0
                return True
            timer = remaining / 1000
        if self._bzpop is None:
            self.marker_waits += 1
            self._bzpop = asyncio.get_running_loop().create_task(
                self._bzpopmin(self._drain_delay_s), name="nlq-marker-wait")
        bzpop = self._bzpop
        await asyncio.wait({bzpop, self._closing_future()}, timeout=timer,
                           return_when=asyncio.FIRST_COMPLETED)
        if not bzpop.done():
            if self._closing.is_set():
                return False
            self.block_until = 0  # the timer fired: the delayed job is due
            return True
        self._bzpop = None
        result = bzpop.result()  # connection errors propagate to the slot
        if not result:
            self.block_until = 0  # drain delay passed without a marker: look anyway
            return True
        score = int(float(result[2]))
        if score <= 0:
            return True  # "a job is waiting"
        if not self.block_until or score < self.block_until:
            self.block_until = score
        if self.block_until - now_ms() < 1:
            self.block_until = 0
            return True
        return False

    async def _bzpopmin(self, timeout_s: float) -> Any:
        timeout: float = timeout_s if self._double_timeout else math.ceil(timeout_s)
        try:
            return await asyncio.wait_for(self._blocking.bzpopmin(self._marker, timeout),
                                          timeout + WATCHDOG_GRACE_S)
        except TimeoutError:
            if self._closing.is_set():
                return None
            log.warning("BZPOPMIN on %s did not return %.0f s after its timeout; "
                        "reconnecting the blocking connection", self._marker, WATCHDOG_GRACE_S)
            with contextlib.suppress(Exception):
                await self._blocking.connection_pool.disconnect()  # type: ignore[union-attr]
            return None

    def _closing_future(self) -> asyncio.Future[Any]:
        if self._closing_wait is None:
            self._closing_wait = asyncio.ensure_future(self._closing.wait())
        return self._closing_wait

    async def _sleep_until(self, deadline_ms: int) -> None:
        delay = (deadline_ms - now_ms()) / 1000
        if delay > 0:
            await asyncio.wait({self._closing_future()}, timeout=delay)

    async def close(self) -> None:
        """Cancel the pending marker wait (its connection is dropped by redis-py)."""
        for pending in (self._bzpop, self._closing_wait):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
        self._bzpop = None
        self._closing_wait = None
