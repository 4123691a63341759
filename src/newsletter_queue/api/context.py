"""What every route of the API shares: settings, manager, admin, monitor, dev tools, store.

One ``ApiContext`` per app, kept on ``app.state.nlq``. The manager and store may be
handed in (``run_system`` shares its own); what the context creates itself it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..admin import QueueAdmin
from ..config import Settings
from ..connection import finished_within
from ..dev import DevTools
from ..errors import RedisUnavailableError
from ..manager import QueueManager
from ..monitor import QueueMonitor
from ..services.store import Store
from .errors import ApiError

# A Redis that does not answer within this is reported as unavailable (HTTP 503), so
# clients learn of an outage within a second instead of waiting on socket timeouts. It is
# called only after the event loop has had turns to read a reply (``finished_within``):
# a loop busy with a burst delays the verdict, it does not fake one.
REDIS_DEADLINE_S = 0.8
# How long a successful ping vouches for Redis before the next request pings again.
READY_FRESH_S = 0.25


class ApiContext:
    """Shared state of one app."""

    def __init__(self, settings: Settings, manager: QueueManager | None,
                 store: Any = None) -> None:
        self.settings = settings
        self.owns_manager = manager is None
        self.manager = manager or QueueManager(settings)
        self.monitor = QueueMonitor(settings, manager=self.manager)
        self.devtools = DevTools(settings, manager=self.manager, monitor=self.monitor)
        self._store: Any = store
        # What every route reads and changes goes through it (dead letters: this store).
        self.admin = QueueAdmin(self.manager, store=self.store)
        self._ready_at = -1e9  # monotonic time of the last successful ping
        self._ping: asyncio.Future[None] | None = None
        self.performance_running = asyncio.Lock()  # one action=performance at a time

    @property
    def dev_enabled(self) -> bool:
        return self.settings.dev_mode or self.settings.dev_api

    async def redis_ready(self) -> None:
        """Check Redis answers, within ``REDIS_DEADLINE_S`` (connecting included).

        One ping serves every request that arrives while it is in flight, and a success
        stands for ``READY_FRESH_S``: a burst of 1,000 requests costs one PING, not
        1,000. The ping goes over the manager's probe connection, never queued behind
        the burst's commands in the shared pool, and its deadline is called only after
        the event loop has had turns to read the reply, so a loop busy parsing the burst
        is never taken for a silent Redis. A failure is never cached: the next request
        pings again.

        Raises:
            RedisUnavailableError: no answer in time, or the connection failed.
        """
        if time.monotonic() - self._ready_at < READY_FRESH_S:
            return
        if self._ping is None or self._ping.done():
            self._ping = asyncio.ensure_future(self._ping_redis())
        await asyncio.shield(self._ping)

    async def _ping_redis(self) -> None:
        steps = [0]  # what the attempt has done so far; each step earns more loop turns

        async def ping() -> None:
            await self.manager.client()  # connected and the server checked
            steps[0] += 1
            probe = await self.manager.probe_client()
            pool = getattr(probe, "connection_pool", None)
            if pool is not None and hasattr(pool, "get_connection"):
                await pool.release(await pool.get_connection())  # the probe's socket open
                steps[0] += 1
            await probe.ping()

        attempt = asyncio.ensure_future(ping())
        try:
            if not await finished_within(attempt, REDIS_DEADLINE_S, lambda: steps[0]):
                attempt.cancel()
                raise self._unavailable(f"no answer within the deadline ({REDIS_DEADLINE_S} s)")
            attempt.result()
        except RedisUnavailableError:
            raise
        except (TimeoutError, RedisTimeoutError) as exc:
            raise self._unavailable(f"no answer ({type(exc).__name__})") from exc
        except (OSError, RedisError) as exc:
            raise self._unavailable(type(exc).__name__) from exc
        finally:
            if not attempt.done():
                attempt.cancel()
        self._ready_at = time.monotonic()

    def _unavailable(self, reason: str) -> RedisUnavailableError:
        url = self.manager.url
        if url == "(not connected)":
            url = self.settings.masked_redis_url or "(default)"
        return RedisUnavailableError(url, reason)

    async def warm_up(self) -> None:
        """Connect to Redis before the first request needs it (run at start-up, in the
        background): a burst that arrives first then finds the connections open. A
        failure here is nobody's answer; requests report Redis themselves."""
        with contextlib.suppress(Exception):
            await self.redis_ready()

    async def store(self) -> Store:
        """The records store (dead letters): the one handed in, else opened on first use.

        Raises:
            ApiError: 503 when it cannot be opened.
        """
        if self._store is not None:
            return self._store  # type: ignore[no-any-return]
        try:
            self._store = await self.manager.store()
        except Exception as exc:
            raise ApiError(503, "the records store (dead letters) is unavailable: "
                                f"{type(exc).__name__}") from exc
        return self._store  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self.owns_manager:
            await self.manager.close()
