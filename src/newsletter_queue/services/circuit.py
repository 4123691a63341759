"""A circuit breaker whose state lives in Redis, shared by every worker process.

Why in Redis: the email and AI queues run in several processes; when a provider fails,
all of them must stop hammering it at once, and the monitor and ``/metrics`` (other
processes) must see the state. One small Lua script per transition keeps it atomic.

States: ``closed`` (calls flow; consecutive transient failures are counted), ``open``
(calls refused until ``open_until``), ``half-open`` (one probe call at a time is let
through; its success closes the circuit, its failure opens it again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from ..connection import AnyRedis
from ..keyspace import breaker_key

if TYPE_CHECKING:
    from ..engine.scripts import ScriptLane

State = Literal["closed", "open", "half-open"]

# KEYS[1] breaker hash. ARGV: now_ms, probe_ttl_ms, probe_poll_ms
_ALLOW = """
local h = KEYS[1]
local now = tonumber(ARGV[1])
local state = redis.call('HGET', h, 'state') or 'closed'
if state == 'closed' then return {1, 0, state} end
local until_ms = tonumber(redis.call('HGET', h, 'open_until') or '0')
if state == 'open' and now < until_ms then return {0, until_ms - now, state} end
-- cool-down over (or already half-open): one probe at a time
local probe = tonumber(redis.call('HGET', h, 'probe_until') or '0')
if probe > now then return {0, math.min(probe - now, tonumber(ARGV[3])), 'half-open'} end
redis.call('HSET', h, 'state', 'half-open', 'probe_until', now + tonumber(ARGV[2]))
return {1, 0, 'half-open'}
"""

# KEYS[1] breaker hash. ARGV: now_ms, threshold, cooldown_ms
_FAILURE = """
local h = KEYS[1]
local now = tonumber(ARGV[1])
local state = redis.call('HGET', h, 'state') or 'closed'
local failures = redis.call('HINCRBY', h, 'failures', 1)
if state == 'half-open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', h, 'state', 'open', 'open_until', now + tonumber(ARGV[3]),
             'opened_at', now, 'probe_until', 0)
  redis.call('HINCRBY', h, 'opened_count', 1)
  return {1, tonumber(ARGV[3])}
end
if state == 'open' then
  local until_ms = tonumber(redis.call('HGET', h, 'open_until') or '0')
  return {0, math.max(until_ms - now, 0)}
end
return {0, 0}
"""

# KEYS[1] breaker hash.
_SUCCESS = """
local h = KEYS[1]
local state = redis.call('HGET', h, 'state') or 'closed'
redis.call('HSET', h, 'state', 'closed', 'failures', 0, 'probe_until', 0)
if state ~= 'closed' then return 1 end
return 0
"""


@dataclass(frozen=True)
class Decision:
    """Whether a call may go ahead, and if not for how long to wait."""

    allowed: bool
    retry_after_ms: int
    state: State


@dataclass(frozen=True)
class BreakerStatus:
    name: str
    state: State
    failures: int
    open_until_ms: int
    opened_count: int


class CircuitBreaker:
    """Redis-backed breaker named ``name`` under ``key_prefix``.

    Args:
        threshold: consecutive transient failures that open the circuit.
        cooldown_ms: how long it stays open before a half-open probe.
        probe_ttl_ms: how long one half-open probe may take before another is allowed.
        probe_poll_ms: while a probe is in flight, how soon the others ask again (the
            probe usually ends long before its TTL; waiting the whole TTL made every
            recovery up to 30 s late, the queue paused all that time).
    """

    def __init__(
        self,
        client: AnyRedis,
        key_prefix: str,
        name: str,
        *,
        threshold: int = 5,
        cooldown_ms: int = 30_000,
        probe_ttl_ms: int = 30_000,
        probe_poll_ms: int = 1_000,
        scripts: ScriptLane | None = None,
    ) -> None:
        if threshold < 1 or cooldown_ms < 1:
            raise ValueError("threshold and cooldown_ms must be positive")
        self.client = client
        self.name = name
        self.key = breaker_key(key_prefix, name)
        self.threshold = threshold
        self.cooldown_ms = cooldown_ms
        self.probe_ttl_ms = probe_ttl_ms
        self.probe_poll_ms = max(1, min(probe_poll_ms, probe_ttl_ms))
        host = client if scripts is None else scripts  # a worker's pipelined lane
        self._allow = host.register_script(_ALLOW)
        self._failure = host.register_script(_FAILURE)
        self._success = host.register_script(_SUCCESS)

    async def allow(self) -> Decision:
        res = cast(list[Any], await self._allow(keys=[self.key],
                                                args=[_now_ms(), self.probe_ttl_ms,
                                                      self.probe_poll_ms]))
        return Decision(bool(int(res[0])), int(res[1]), cast(State, str(res[2])))

    async def record_failure(self) -> int:
        """Count a transient failure. Returns ms to wait if the circuit is (now) open."""
        res = cast(list[Any], await self._failure(
            keys=[self.key], args=[_now_ms(), self.threshold, self.cooldown_ms]))
        return int(res[1])

    async def record_success(self) -> bool:
        """Close the circuit. Returns True if it was open or half-open."""
        return bool(int(cast(int, await self._success(keys=[self.key]))))

    async def status(self) -> BreakerStatus:
        raw = cast(dict[str, str], await self.client.hgetall(self.key))
        return BreakerStatus(
            name=self.name,
            state=cast(State, raw.get("state", "closed")),
            failures=int(raw.get("failures", 0)),
            open_until_ms=int(raw.get("open_until", 0)),
            opened_count=int(raw.get("opened_count", 0)),
        )

    async def reset(self) -> None:
        await self.client.delete(self.key)


def _now_ms() -> int:
    return int(time.time() * 1000)
