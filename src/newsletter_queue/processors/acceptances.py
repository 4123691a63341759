"""Recording accepted messages in the ledger, whatever Redis is doing.

The email processor calls ``SentRecorder.record`` the moment the SMTP server accepts a
message. Giving up on that record would leave the recipient's claim to expire and the
message to be sent again; while this process is alive it knows the message went out,
and while Redis is down nobody else can re-claim the recipient, so it keeps trying
(every 0.25 s at most, so the record beats a re-run of the batch once Redis is back).
Until it lands, ``unrecorded`` holds the recipient, and a re-run of the batch in this
process leaves it alone. One warning per outage per process.

The writes themselves are group-committed by ``send_ledger.AcceptanceLog``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..connection import AnyRedis
from ..services.send_ledger import AcceptanceLog

log = logging.getLogger(__name__)

_OUTAGE_WARNING_EVERY_S = 30.0


class SentRecorder:
    """Records acceptances for one worker process's email processor."""

    _last_outage_warning = float("-inf")  # shared: one warning per outage per process

    def __init__(self, redis: AnyRedis) -> None:
        self.redis = redis
        self.log = AcceptanceLog(redis)
        # Accepted by the SMTP server, not yet in the ledger: (ledger key, address).
        self.unrecorded: set[tuple[str, str]] = set()
        self._prober: asyncio.Task[None] | None = None

    async def record(self, ledger_key: str, email: str) -> None:
        """Record that the message to ``email`` was accepted; returns once it is in the
        ledger, waiting out a Redis outage however long it lasts."""
        pending = (ledger_key, email)
        self.unrecorded.add(pending)
        try:
            await self._record_until_done(ledger_key, email)
        finally:
            self.unrecorded.discard(pending)

    async def _record_until_done(self, ledger_key: str, email: str) -> None:
        waited = False
        while True:
            try:
                await self.log.mark_sent(ledger_key, email)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                waited = True
                now = time.monotonic()
                if now - SentRecorder._last_outage_warning > _OUTAGE_WARNING_EVERY_S:
                    SentRecorder._last_outage_warning = now
                    log.warning("Redis unavailable while recording sent messages; "
                                "retrying until it is back")
                await self._redis_back()
                continue
            if waited:
                log.debug("recorded the message to %s once Redis was back", email)
            return

    async def _redis_back(self) -> None:
        """Wait until Redis answers again: one prober for all the waiting records."""
        if self._prober is None or self._prober.done():
            self._prober = asyncio.create_task(self._probe_until_up())
        await asyncio.shield(self._prober)

    async def _probe_until_up(self) -> None:
        pause = 0.05
        while True:
            try:
                await self.redis.ping()
                return
            except (RedisConnectionError, RedisTimeoutError, OSError):
                await asyncio.sleep(pause)
                # Short pauses: once Redis is back the records must beat a re-run of
                # the batch, which would take the expired claims and send again.
                pause = min(pause * 2, 0.25)
