"""A campaign's state and live counters in Redis, shared by producers and workers.

Keys (next to the progress keys of ``lifecycle``, under
``{prefix}:email:campaign:{tenant}:{campaign}``):

- ``:state`` — a hash: ``state`` (``scheduled``, ``sending``, ``paused``, ``cancelled``;
  absent for a draft and for a campaign sent with the low-level
  ``QueueManager.schedule_batch_email_sending``), ``recipients`` (the total),
  ``send_at_ms``, ``started_at_ms`` (set by the first chunk a worker sends),
  ``enqueued`` (``1`` once every batch was added).
- ``:counts`` — a hash ``sent``/``bounced``/``failed``, incremented by the email
  processor once per chunk with that chunk's outcomes.
- ``:rate`` — messages per 5-second window (field = window number), about the last
  minute of them: the current rate.

*completed* is not stored here: it is the progress flag ``:completed`` (set when the
last batch finished). The workers read the state once per chunk (``gate``): *paused*
parks the batch, *cancelled* ends it. All keys expire 30 days after their last write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from ..connection import AnyRedis
from ..keyspace import campaign_key

if TYPE_CHECKING:
    from ..engine.scripts import ScriptLane

CampaignState = Literal["draft", "scheduled", "sending", "paused", "cancelled", "completed"]
CAMPAIGN_STATES: tuple[CampaignState, ...] = (
    "draft", "scheduled", "sending", "paused", "cancelled", "completed")
TTL_S = 30 * 24 * 3600
RATE_WINDOW_S = 5
_RATE_WINDOWS = 12  # about a minute is kept

# KEYS[1] state hash. ARGV: now_ms, ttl_s. Returns the stored state ('' if none).
_GATE = """
local s = redis.call('HGET', KEYS[1], 'state')
if s == 'paused' or s == 'cancelled' then return s end
redis.call('HSETNX', KEYS[1], 'started_at_ms', ARGV[1])
if s == 'scheduled' then redis.call('HSET', KEYS[1], 'state', 'sending') end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return s or ''
"""

# KEYS[1] counts, KEYS[2] rate. ARGV: sent, bounced, failed, suppressed, window, keep,
# ttl_s. The rate counts what reached the SMTP server (suppressed addresses did not).
_RECORD = """
local n = tonumber(ARGV[1]) + tonumber(ARGV[2]) + tonumber(ARGV[3])
redis.call('HINCRBY', KEYS[1], 'sent', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'bounced', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'suppressed', ARGV[4]) end
if n > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[5], n)
  if redis.call('HLEN', KEYS[2]) > tonumber(ARGV[6]) then
    local oldest = tonumber(ARGV[5]) - tonumber(ARGV[6])
    for _, w in ipairs(redis.call('HKEYS', KEYS[2])) do
      if tonumber(w) <= oldest then redis.call('HDEL', KEYS[2], w) end
    end
  end
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
return n
"""

# KEYS[1] state hash, KEYS[2] batch total, KEYS[3] completed flag.
# ARGV: new state, ttl_s, allowed current states... Returns {1|0, state before}.
_MOVE = """
local s = redis.call('HGET', KEYS[1], 'state')
if redis.call('EXISTS', KEYS[3]) == 1 and s ~= 'cancelled' then s = 'completed' end
if not s then
  if redis.call('EXISTS', KEYS[2]) == 1 then s = 'sending' else s = 'draft' end
end
for i = 3, #ARGV do
  if ARGV[i] == s then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    redis.call('EXPIRE', KEYS[1], ARGV[2])
    if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
    return {1, s}
  end
end
return {0, s}
"""

# KEYS[1] state hash, KEYS[2] batch total, KEYS[3] completed flag.
# ARGV: state, recipients, batches, send_at_ms, ttl_s.
# Returns 1 (started now), 2 (started before but not fully enqueued), 0 (not a draft).
_START = """
if redis.call('HEXISTS', KEYS[1], 'state') == 1 then
  if redis.call('HGET', KEYS[1], 'enqueued') == '0' then return 2 end
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'recipients', ARGV[2], 'send_at_ms', ARGV[4],
           'enqueued', '0')
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[5])
return 1
"""


@dataclass(frozen=True)
class Snapshot:
    """Everything Redis knows about one campaign, read in one round trip."""

    stored_state: str | None
    recipients: int
    send_at_ms: int
    started_at_ms: int | None
    enqueued: bool
    sent: int
    bounced: int
    failed: int
    suppressed: int
    batches_total: int
    batches_done: int
    completed_at_ms: int | None
    rate: float

    @property
    def known(self) -> bool:
        """Whether the campaign was ever sent (managed or not)."""
        return self.stored_state is not None or self.batches_total > 0 \
            or self.completed_at_ms is not None

    @property
    def state(self) -> CampaignState:
        """The state as Redis has it (*draft* when Redis knows nothing of it)."""
        if self.completed_at_ms is not None:
            return "cancelled" if self.stored_state == "cancelled" else "completed"
        if self.stored_state in ("paused", "cancelled", "sending"):
            return cast(CampaignState, self.stored_state)
        if self.stored_state == "scheduled":
            return "sending" if self.started_at_ms is not None else "scheduled"
        return "sending" if self.batches_total > 0 else "draft"


class CampaignControl:
    """The state, counters and rate of one campaign. The worker side's scripts run on
    ``scripts`` when given (a worker's pipelined lane), else on ``client``."""

    def __init__(self, client: AnyRedis, key_prefix: str, tenant_id: str,
                 campaign_id: str, *, scripts: ScriptLane | None = None) -> None:
        self.client = client
        self._scripts = client if scripts is None else scripts
        base = campaign_key(key_prefix, tenant_id, campaign_id)
        self.state_key = f"{base}:state"
        self.counts_key = f"{base}:counts"
        self.rate_key = f"{base}:rate"
        self.total_key = f"{base}:batches"  # the progress keys of ``lifecycle``
        self.done_key = f"{base}:done"
        self.flag_key = f"{base}:completed"

    # --- the worker side ----------------------------------------------------------------
    async def gate(self) -> str:
        """Before a chunk: the stored state (``''`` if none). Unless it is ``paused`` or
        ``cancelled``, records the start time and turns *scheduled* into *sending*."""
        script = self._scripts.register_script(_GATE)
        return str(await script(keys=[self.state_key], args=[_now_ms(), TTL_S]) or "")

    async def record_chunk(self, sent: int, bounced: int, failed: int,
                           suppressed: int = 0) -> None:
        """After a chunk: add its outcomes to the counters and the rate."""
        if sent or bounced or failed or suppressed:
            window = int(time.time()) // RATE_WINDOW_S
            script = self._scripts.register_script(_RECORD)
            await script(keys=[self.counts_key, self.rate_key],
                         args=[sent, bounced, failed, suppressed, window, _RATE_WINDOWS,
                               TTL_S])

    # --- the producer side --------------------------------------------------------------
    async def set_recipients(self, count: int) -> None:
        await self.client.hset(self.state_key, "recipients", count)
        await self.client.expire(self.state_key, TTL_S)

    async def start(self, state: CampaignState, recipients: int, batches: int,
                    send_at_ms: int) -> int:
        """Move a draft to ``state`` and store its totals, atomically: 1 if this call did,
        2 if an earlier call did but did not finish adding its batches, 0 otherwise."""
        script = self.client.register_script(_START)
        return int(cast(Any, await script(
            keys=[self.state_key, self.total_key, self.flag_key],
            args=[state, recipients, batches, send_at_ms, TTL_S])))

    async def mark_enqueued(self) -> None:
        await self.client.hset(self.state_key, "enqueued", "1")

    async def move(self, to: CampaignState, allowed: tuple[str, ...]) -> tuple[bool, str]:
        """Set the state to ``to`` if it is one of ``allowed``; returns (moved, before)."""
        script = self.client.register_script(_MOVE)
        moved, before = cast(list[Any], await script(
            keys=[self.state_key, self.total_key, self.flag_key], args=[to, TTL_S, *allowed]))
        return bool(int(moved)), str(before)

    async def snapshot(self) -> Snapshot:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.state_key)
        pipe.hgetall(self.counts_key)
        pipe.hgetall(self.rate_key)
        pipe.get(self.total_key)
        pipe.scard(self.done_key)
        pipe.get(self.flag_key)
        state, counts, rate, total, done, flag = await pipe.execute()
        started = _int(state.get("started_at_ms")) or None
        return Snapshot(
            stored_state=state.get("state"), recipients=_int(state.get("recipients")),
            send_at_ms=_int(state.get("send_at_ms")), started_at_ms=started,
            enqueued=state.get("enqueued", "1") == "1", sent=_int(counts.get("sent")),
            bounced=_int(counts.get("bounced")), failed=_int(counts.get("failed")),
            suppressed=_int(counts.get("suppressed")), batches_total=_int(total),
            batches_done=int(done), completed_at_ms=_int(flag) or None, rate=_rate(rate, started))


def _rate(windows: dict[str, str], started_at_ms: int | None) -> float:
    """Messages per second over the last two full windows and the current one."""
    now = time.time()
    current = int(now) // RATE_WINDOW_S
    first = current - 2
    count = sum(_int(n) for w, n in windows.items() if _int(w) >= first)
    since = float(first * RATE_WINDOW_S)
    if started_at_ms is not None:
        since = max(since, started_at_ms / 1000)
    return round(count / max(now - since, 1.0), 2)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _now_ms() -> int:
    return int(time.time() * 1000)
