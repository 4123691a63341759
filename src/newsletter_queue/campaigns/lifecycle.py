"""Campaigns: a campaign's batches, their ids, its progress and its completion.

A campaign is sent as batch jobs on the ``email`` queue, and the analytics queue is told
once, with one ``campaign-complete`` job, when the last batch has finished. Every step of
that life is here:

1. **Planning** (``plan_campaign``): the recipients are validated and split into batches
   of at most ``batch_size``; batch ``i`` gets the job id ``batch_job_id(tenant,
   campaign, i)``. The ids are deterministic, so sending the same campaign twice adds
   nothing while the first jobs exist (the per-recipient ledger in ``services.send_ledger``
   additionally guarantees one message per recipient if a finished batch was removed
   and is re-added). ``QueueManager.schedule_batch_email_sending`` is the low-level
   entry point; it stores the plan (``CampaignLifecycle.planned``) and adds the batches
   in one bulk call. ``Campaigns.send`` (``manage``) streams checked recipients into the
   same batch ids, ``BULK_GROUP`` batches per bulk call.
2. **Progress** (``CampaignProgress``): how many batches the campaign has is stored
   *before* any batch is added, so no batch can finish before the total is known. Each
   batch, when it finishes for good, adds its job id to a set.
3. **Completion**: a batch finishes for good when the email processor completes it, or
   when the engine fails it for good (``job.failed_for_good``: unrecoverable, attempts
   exhausted, or a backoff that said ``-1`` or raised) — the worker's ``failed`` hook
   then calls ``CampaignLifecycle.batch_failed_for_good``. The call that sees the set
   reach the total, with the ``completed`` flag still unset, enqueues the analytics job
   under ``campaign_complete_job_id`` (BullMQ ignores a second add of the same id) and
   sets the flag. If the process dies in between, the batch job is re-run (it is still
   active, so it stalls and is recovered), sees the same state and enqueues again —
   still one job. An atomic counter was preferred to a BullMQ flow because the batches
   are added in bulk up front and any of them may be the last to finish.

Redis keys (``{prefix}:email:campaign:{tenant}:{campaign}:…``): ``batches`` (the total),
``done`` (the set of finished batch ids), ``completed`` (the flag, a timestamp). They
expire 30 days after the last write (each finished batch renews ``batches`` and
``done``). The names and the job ids are part of the data format: a running system's
campaigns must keep completing across an upgrade.

``CampaignLifecycle`` is the one object over these; the worker side opens it with the
Redis client the processors use, the producer side with the manager's client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pydantic import TypeAdapter, ValidationError

from ..config import Settings
from ..connection import AnyRedis
from ..errors import FieldError, JobValidationError
from ..jobs import EmailJobData, Recipient, field_errors, id_errors, payload_size
from ..keyspace import campaign_key
from ..queues import ANALYTICS_CAMPAIGN_COMPLETE, EMAIL_SEND_BATCH
from .control import CampaignControl

if TYPE_CHECKING:
    from ..manager import QueueManager
    from ..snapshots import EnqueuedJob

log = logging.getLogger(__name__)

PROGRESS_TTL_S = 30 * 24 * 3600
CompletionHook = Callable[[str, str], Awaitable[object]]
"""Called with ``(tenant_id, campaign_id)`` when a campaign's last batch finished."""

_RECIPIENTS = TypeAdapter(list[Recipient])

# KEYS[1] done set, KEYS[2] total, KEYS[3] done flag. ARGV: batch id, ttl_s
_BATCH_DONE = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if total == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[2])
if redis.call('SCARD', KEYS[1]) >= total and redis.call('EXISTS', KEYS[3]) == 0 then
  return 1
end
return 0
"""


# --- ids and planning ------------------------------------------------------------------
def plan_batches(recipients: Sequence[Any], batch_size: int) -> list[tuple[int, int]]:
    """Split ``len(recipients)`` into ``(start, end)`` slices of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    total = len(recipients)
    return [(start, min(start + batch_size, total)) for start in range(0, total, batch_size)]


def batch_job_id(tenant_id: str, campaign_id: str, index: int) -> str:
    """Deterministic id of batch ``index`` of a campaign: re-enqueueing adds nothing."""
    return f"email-{tenant_id}-{campaign_id}-b{index:05d}"


def campaign_complete_job_id(tenant_id: str, campaign_id: str) -> str:
    """Deterministic id of a campaign's ``campaign-complete`` job: enqueued at most once."""
    return f"campaign-complete-{tenant_id}-{campaign_id}"


@dataclass(frozen=True)
class CampaignPlan:
    """A validated campaign: its recipients (wire form) and how they split into batches."""

    tenant_id: str
    campaign_id: str
    batch_size: int
    recipients: list[dict[str, Any]]
    batches: list[tuple[int, int]]

    def jobs(self, opts: Mapping[str, Any], max_payload_bytes: int,
             name: str = EMAIL_SEND_BATCH) -> list[dict[str, Any]]:
        """The batch jobs for ``Queue.addBulk``, each with its id and ``opts`` (BullMQ's
        camelCase options).

        Raises:
            JobValidationError: a batch's payload is over ``max_payload_bytes``.
        """
        return [batch_job(self.tenant_id, self.campaign_id, index, self.recipients[start:end],
                          self.batch_size, opts, max_payload_bytes, name, first=start)
                for index, (start, end) in enumerate(self.batches)]


def batch_job(tenant_id: str, campaign_id: str, index: int, recipients: list[dict[str, Any]],
              batch_size: int, opts: Mapping[str, Any], max_payload_bytes: int,
              name: str = EMAIL_SEND_BATCH, *, first: int = 0) -> dict[str, Any]:
    """Batch ``index`` of a campaign as a ``Queue.addBulk`` entry (``recipients`` in wire
    form, the first of them recipient number ``first`` of the campaign).

    Raises:
        JobValidationError: the batch's payload is over ``max_payload_bytes``.
    """
    wire = {"campaignId": campaign_id, "tenantId": tenant_id,
            "recipients": recipients, "batchSize": batch_size}
    size = payload_size(wire)
    if size > max_payload_bytes:
        raise JobValidationError("EmailJobData", [FieldError(
            f"recipients[{first}:{first + len(recipients)}]",
            f"batch payload is {size} bytes; at most {max_payload_bytes}: "
            "use a smaller batch_size",
        )])
    return {"name": name, "data": wire,
            "opts": {"jobId": batch_job_id(tenant_id, campaign_id, index), **opts}}


def plan_campaign(
    settings: Settings,
    campaign_id: str,
    tenant_id: str,
    recipients: Iterable[Recipient | Mapping[str, Any]],
    batch_size: int | None = None,
) -> CampaignPlan:
    """Validate a campaign's ids and recipients and plan its batches.

    ``batch_size`` defaults to ``settings.default_batch_size``.

    Raises:
        JobValidationError: listing every problem (batch size, ids, each recipient).
    """
    size = settings.default_batch_size if batch_size is None else batch_size
    limit = settings.job_limits.max_recipients_per_job
    errors: list[FieldError] = []
    if not 1 <= size <= limit:
        errors.append(FieldError("batch_size", f"must be 1..{limit}"))
    rows = [r.to_wire() if isinstance(r, Recipient) else r for r in recipients]
    if not rows:
        errors.append(FieldError("recipients", "at least one recipient needed"))
    errors.extend(id_errors(campaignId=campaign_id, tenantId=tenant_id))
    try:
        parsed = _RECIPIENTS.validate_python(rows)
    except ValidationError as exc:
        errors.extend(FieldError("recipients" + e.path.removeprefix("(root)"), e.message)
                      for e in field_errors(exc, EmailJobData))
        parsed = []
    if errors:
        raise JobValidationError("EmailJobData", errors)
    wire = [r.to_wire() for r in parsed]
    return CampaignPlan(tenant_id, campaign_id, size, wire, plan_batches(wire, size))


# --- progress and completion -----------------------------------------------------------
class CampaignProgress:
    """The counters of one campaign: its batch total, the finished batches, the flag."""

    def __init__(self, client: AnyRedis, key_prefix: str, tenant_id: str, campaign_id: str,
                 ttl_s: int = PROGRESS_TTL_S) -> None:
        self.client = client
        base = campaign_key(key_prefix, tenant_id, campaign_id)
        self.done_key = f"{base}:done"
        self.total_key = f"{base}:batches"
        self.flag_key = f"{base}:completed"
        self.ttl_s = ttl_s
        self._batch_done = client.register_script(_BATCH_DONE)

    async def set_total(self, batches: int) -> None:
        await self.client.set(self.total_key, batches, ex=self.ttl_s)

    async def batch_finished(self, batch_id: str) -> bool:
        """Record a finished batch; True if this makes the campaign complete."""
        res = await self._batch_done(keys=[self.done_key, self.total_key, self.flag_key],
                                     args=[batch_id, self.ttl_s])
        return bool(int(cast(Any, res)))

    async def mark_completed(self) -> None:
        await self.client.set(self.flag_key, int(time.time() * 1000), ex=self.ttl_s)

    async def state(self) -> dict[str, int | bool]:
        pipe = self.client.pipeline(transaction=False)
        pipe.scard(self.done_key)
        pipe.get(self.total_key)
        pipe.exists(self.flag_key)
        done, total, flag = await pipe.execute()
        return {"done": int(done), "total": int(total or 0), "completed": bool(flag)}


class CampaignLifecycle:
    """A campaign's life after planning: its stored plan, finished batches, completion.

    Args:
        client: the Redis client the counters are kept with.
        key_prefix: the deployment's key prefix.
        on_complete: enqueues the ``campaign-complete`` job (``enqueue_campaign_complete``
            in a worker process); without it completion is still recorded.
    """

    def __init__(self, client: AnyRedis, key_prefix: str, *,
                 on_complete: CompletionHook | None = None) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.on_complete = on_complete

    def progress(self, tenant_id: str, campaign_id: str) -> CampaignProgress:
        return CampaignProgress(self.client, self.key_prefix, tenant_id, campaign_id)

    async def planned(self, plan: CampaignPlan) -> None:
        """Store how many batches ``plan`` has (before any of them is added), and how many
        recipients (what ``Campaigns.status`` shows as the total)."""
        await self.progress(plan.tenant_id, plan.campaign_id).set_total(len(plan.batches))
        await CampaignControl(self.client, self.key_prefix, plan.tenant_id,
                              plan.campaign_id).set_recipients(len(plan.recipients))

    async def batch_finished(self, tenant_id: str, campaign_id: str, batch_id: str) -> bool:
        """Count a batch that finished for good; complete the campaign if it was the last.

        Returns whether this call completed the campaign.
        """
        progress = self.progress(tenant_id, campaign_id)
        if not await progress.batch_finished(batch_id):
            return False
        if self.on_complete is not None:
            await self.on_complete(tenant_id, campaign_id)
        await progress.mark_completed()
        log.info("campaign %s of tenant %s: last batch finished", campaign_id, tenant_id)
        return True

    async def batch_failed_for_good(self, job: Any) -> None:
        """Count a batch job the engine failed for good (the worker's ``failed`` hook)."""
        data = job.data if isinstance(job.data, dict) else {}
        tenant, campaign = data.get("tenantId"), data.get("campaignId")
        if isinstance(tenant, str) and isinstance(campaign, str):
            await self.batch_finished(tenant, campaign, str(job.id))


async def enqueue_campaign_complete(producer: QueueManager, tenant_id: str,
                                    campaign_id: str) -> EnqueuedJob:
    """Add the campaign's ``campaign-complete`` analytics job (once: its id is fixed)."""
    return await producer.schedule_analytics_job(
        ANALYTICS_CAMPAIGN_COMPLETE,
        {"campaignId": campaign_id, "tenantId": tenant_id,
         "eventType": ANALYTICS_CAMPAIGN_COMPLETE},
        {"job_id": campaign_complete_job_id(tenant_id, campaign_id)})

