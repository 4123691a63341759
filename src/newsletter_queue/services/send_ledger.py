"""The per-campaign send ledger in Redis: one message per recipient per campaign.

BullMQ executes jobs at least once: a batch may run again after a retry, a stall or a
re-enqueue. The ledger (a hash ``{prefix}:email:ledger:{tenant}:{campaign}``, field =
recipient address) makes sending idempotent per recipient:

1. ``claim`` (atomic, Lua): a recipient already ``sent`` or ``bounced`` is skipped; a
   free one is marked ``pending`` with this attempt's token and an expiry; one pending
   under another live token is reported busy (try later).
2. The message is sent; the moment the SMTP server accepts it, it is recorded ``sent``
   (a 5xx records ``bounced``; a 4xx or connection error releases the claim). The email
   processor records acceptances through ``AcceptanceLog``: those that arrive while one
   write is in flight go together in the next (group commit), so an acceptance reaches
   Redis at most two round trips after the server gave it, whatever the send rate.
3. A pending claim whose expiry passed was left by a process that died between claiming
   and recording. It is claimed again and the message re-sent — this is the only way a
   recipient can receive a campaign twice (the server accepted the first copy in the
   instant before the crash). Such re-claims are counted (``reclaimed``), and the copy
   carries the same deterministic Message-ID.

A recipient is therefore never skipped unless its message was accepted (or bounced).

How a campaign's batches are counted towards its one ``campaign-complete`` is not the
ledger's business: see ``newsletter_queue.campaigns``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, cast

from ..connection import AnyRedis
from ..keyspace import ledger_key

if TYPE_CHECKING:
    from ..engine.scripts import ScriptLane

# KEYS[1] ledger, KEYS[2] ledger meta. ARGV: now_ms, token, ttl_ms, ledger_ttl_s, emails...
_CLAIM = """
local now = tonumber(ARGV[1])
local token = ARGV[2]
local expires = now + tonumber(ARGV[3])
local out = {}
for i = 5, #ARGV do
  local email = ARGV[i]
  local v = redis.call('HGET', KEYS[1], email)
  if not v then
    redis.call('HSET', KEYS[1], email, 'p|' .. token .. '|' .. expires)
    out[#out + 1] = 1
  elseif string.sub(v, 1, 1) == 's' then
    out[#out + 1] = 0
  elseif string.sub(v, 1, 1) == 'b' then
    out[#out + 1] = 4
  else
    local owner, until_ms = string.match(v, '^p|([^|]*)|(%d+)$')
    if owner == token then
      redis.call('HSET', KEYS[1], email, 'p|' .. token .. '|' .. expires)
      out[#out + 1] = 1
    elseif until_ms and tonumber(until_ms) <= now then
      redis.call('HSET', KEYS[1], email, 'p|' .. token .. '|' .. expires)
      redis.call('HINCRBY', KEYS[2], 'reclaimed', 1)
      out[#out + 1] = 2
    else
      -- busy: report how long the other claim still lives (as a negative number)
      out[#out + 1] = -math.max(tonumber(until_ms or now) - now, 1)
    end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return out
"""

# KEYS[1] ledger. ARGV: token, emails... — drop our own pending claims (transient failure).
_RELEASE = """
local n = 0
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, 1, 1) == 'p' and string.match(v, '^p|([^|]*)|') == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
"""

class Claim(IntEnum):
    """Outcome of claiming one recipient."""

    DONE = 0  # already sent: skip
    CLAIMED = 1  # ours to send
    RECLAIMED = 2  # a dead attempt's claim expired: ours, and possibly a re-send
    BUSY = 3  # another live attempt is sending it: try later (see ``busy_ms``)
    BOUNCED = 4  # already refused for good (5xx) or unrenderable: skip


@dataclass(frozen=True)
class LedgerCounts:
    sent: int
    bounced: int
    pending: int
    reclaimed: int


class CampaignLedger:
    """The ledger of one campaign. Its scripts run on ``scripts`` when given (a worker's
    pipelined lane), else on ``client``."""

    def __init__(self, client: AnyRedis, key_prefix: str, tenant_id: str, campaign_id: str,
                 *, claim_ttl_ms: int = 30_000, ttl_s: int = 30 * 24 * 3600,
                 scripts: ScriptLane | None = None) -> None:
        self.client = client
        base = ledger_key(key_prefix, tenant_id, campaign_id)
        self.key = base
        self.meta_key = f"{base}:meta"
        self.claim_ttl_ms = claim_ttl_ms
        self.ttl_s = ttl_s
        host = client if scripts is None else scripts
        self._claim = host.register_script(_CLAIM)
        self._release = host.register_script(_RELEASE)

    async def claim(self, token: str, emails: Sequence[str]) -> list[tuple[Claim, int]]:
        """Claim ``emails`` for the attempt ``token``.

        Returns one ``(Claim, busy_ms)`` per address; ``busy_ms`` is how long another
        attempt's claim still lives (0 unless ``Claim.BUSY``).
        """
        if not emails:
            return []
        res = cast(list[int], await self._claim(
            keys=[self.key, self.meta_key],
            args=[_now_ms(), token, self.claim_ttl_ms, self.ttl_s, *emails]))
        return [(Claim.BUSY, -int(x)) if int(x) < 0 else (Claim(int(x)), 0) for x in res]

    async def mark_bounced(self, emails: Sequence[str]) -> None:
        if emails:
            stamp = f"b|{_now_ms()}"
            await self.client.hset(self.key, mapping=dict.fromkeys(emails, stamp))

    async def release(self, token: str, emails: Sequence[str]) -> int:
        if not emails:
            return 0
        return int(cast(int, await self._release(keys=[self.key], args=[token, *emails])))

    async def counts(self) -> LedgerCounts:
        values = cast(list[str], await self.client.hvals(self.key))
        meta = cast(dict[str, str], await self.client.hgetall(self.meta_key))
        tally = {"s": 0, "b": 0, "p": 0}
        for value in values:
            tally[value[:1]] = tally.get(value[:1], 0) + 1
        return LedgerCounts(tally["s"], tally["b"], tally["p"], int(meta.get("reclaimed", 0)))

    async def status(self, email: str) -> str | None:
        value = cast(str | None, await self.client.hget(self.key, email))
        return {"s": "sent", "b": "bounced", "p": "pending"}.get(value[:1]) if value else None


def _now_ms() -> int:
    return int(time.time() * 1000)


class AcceptanceLog:
    """Records accepted messages in their campaigns' ledgers, many per round trip.

    ``mark_sent`` returns once the acceptance is in Redis. The first call starts a write;
    calls made while it is in flight wait for the next one, which takes all of them (one
    pipelined ``HSET`` per ledger). No timer: at low rates each write carries one
    acceptance; at high rates the writes carry tens. A failed write fails every
    ``mark_sent`` it carried (the caller retries).
    """

    def __init__(self, client: AnyRedis) -> None:
        self.client = client
        self._next: dict[str, dict[str, str]] = {}  # ledger key → {email: value}
        self._waiting: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None

    async def mark_sent(self, ledger_key: str, email: str) -> None:
        """Record that the SMTP server accepted the message to ``email``."""
        done = asyncio.get_running_loop().create_future()
        self._next.setdefault(ledger_key, {})[email] = f"s|{_now_ms()}"
        self._waiting.append(done)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        await done

    async def _write_all(self) -> None:
        while self._waiting:
            batch, waiting = self._next, self._waiting
            self._next, self._waiting = {}, []
            error: BaseException | None = None
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for key, mapping in batch.items():
                        pipe.hset(key, mapping=cast(dict[Any, Any], mapping))
                    await pipe.execute()
            except asyncio.CancelledError:
                for future in (*waiting, *self._waiting):
                    future.cancel()
                raise
            except Exception as exc:  # handed to every waiter
                error = exc
            for future in waiting:
                if future.done():  # its caller was cancelled
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
