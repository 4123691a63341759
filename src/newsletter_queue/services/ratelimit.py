"""Token buckets in Redis, shared by every worker process (emails per second).

BullMQ's limiter counts *jobs*; mail servers and providers care about *messages*, and a
batch job holds up to 1,000 of them. The email processor therefore takes tokens from
two buckets at once — the global one and its tenant's — before each chunk of messages.
Both are checked and taken in one Lua call, so a chunk never takes from one bucket and
then waits on the other. A tenant over its rate waits for its own tokens; other
tenants' jobs keep sending.

Each bucket holds at most one second's worth of tokens (``rate``) and refills
continuously.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from ..connection import AnyRedis
from ..keyspace import send_rate_key

if TYPE_CHECKING:
    from ..engine.scripts import ScriptLane

# KEYS: bucket hashes. ARGV[1] now_ms, ARGV[2] tokens wanted, ARGV[3..] rate per bucket.
# Returns 0 when the tokens were taken from every bucket, else ms to wait.
_TAKE = """
local now = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local levels = {}
local wait = 0
for i = 1, #KEYS do
  local rate = tonumber(ARGV[i + 2])
  local b = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(b[1] or rate)
  local ts = tonumber(b[2] or now)
  tokens = math.min(rate, tokens + (now - ts) * rate / 1000)
  levels[i] = tokens
  local need = math.min(want, rate)
  if tokens < need then
    wait = math.max(wait, math.ceil((need - tokens) * 1000 / rate))
  end
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  local rate = tonumber(ARGV[i + 2])
  redis.call('HSET', KEYS[i], 'tokens', levels[i] - math.min(want, rate), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], 60000)
end
return 0
"""


class SendRateLimiter:
    """Emails per second, globally and per tenant."""

    def __init__(self, client: AnyRedis, key_prefix: str, *, global_rate: int,
                 tenant_rate: int, scripts: ScriptLane | None = None) -> None:
        if global_rate < 1 or tenant_rate < 1:
            raise ValueError("rates must be at least 1 per second")
        self.client = client
        self.prefix = send_rate_key(key_prefix)
        self.global_rate = global_rate
        self.tenant_rate = tenant_rate
        # On ``scripts`` when given (a worker's pipelined lane).
        self._take = (client if scripts is None else scripts).register_script(_TAKE)

    def _keys(self, tenant_id: str) -> tuple[list[str], list[int]]:
        return ([f"{self.prefix}:global", f"{self.prefix}:tenant:{tenant_id}"],
                [self.global_rate, self.tenant_rate])

    async def try_take(self, tenant_id: str, tokens: int) -> int:
        """Take ``tokens`` if available. Returns 0, or ms to wait before trying again."""
        keys, rates = self._keys(tenant_id)
        return await self._try(keys, rates, tokens)

    async def _try(self, keys: Sequence[str], rates: Sequence[int], tokens: int) -> int:
        return int(cast(int, await self._take(
            keys=list(keys), args=[int(time.time() * 1000), tokens, *rates])))

    async def take(self, tenant_id: str, tokens: int, *, max_wait_ms: int) -> int:
        """Wait (up to ``max_wait_ms`` in all) until the tokens are taken.

        Returns 0 when taken; otherwise the ms still to wait — the caller should then
        give its slot back (move the job to delayed) rather than sit on it.
        """
        waited = 0
        while True:
            wait = await self.try_take(tenant_id, tokens)
            if wait == 0:
                return 0
            if waited + wait > max_wait_ms:
                return wait
            await asyncio.sleep(wait / 1000)
            waited += wait
