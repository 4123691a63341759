"""The email processor: one batch job → one message per recipient over SMTP.

For each batch (``EmailJobData``):

1. Validate the data (bad data fails the job as unrecoverable, naming the fields).
2. Load the content — the job's inline ``content`` (transactional mail) or the stored
   campaign — and compile its templates once (``services.render``). No content, or a
   template that does not compile, fails the job as unrecoverable naming the campaign.
3. Refuse to start while the SMTP circuit breaker is open: ``RateLimited`` pauses the
   whole email queue for the rest of the cool-down, and the job keeps its attempt.
4. Send in chunks. Per chunk: take tokens from the shared per-second limits (global and
   tenant; a long wait parks the job in *delayed* instead of holding a worker slot),
   claim the recipients in the campaign ledger (recipients already sent or bounced are
   skipped), leave out those on the tenant's suppression list (asked once per batch,
   alongside the first claim; recorded *suppressed*), render, DKIM-sign
   (``services.dkim``: the tenant's key or the global one, when configured), send
   through the SMTP pool, and record each acceptance in the ledger as soon as the
   server gives it (``acceptances.SentRecorder``: it waits out a Redis outage, and
   acceptances that arrive together share a write). Each chunk's delivery rows are handed to a
   background writer (``delivery_rows.RowWriter``: many chunks per transaction) and are
   in the store a moment after its counters are in Redis; a job waits for its rows
   before it counts as finished.
5. 5xx for a recipient → bounced, never retried. 4xx and connection errors → the claim is
   released and, at the end, the job fails with ``TransientSendError`` so BullMQ retries
   it with backoff; the next attempt sends only to the recipients still unsent. After
   ``threshold`` consecutive transient failures the breaker opens and the job ends
   with ``RateLimited`` (queue paused for the cool-down, attempt kept).
6. Before each chunk the campaign's state is read (one Redis call, ``campaigns.control``):
   *paused* parks the job in delayed (no attempt used; ``Campaigns.resume`` promotes
   it), *cancelled* completes it at once with ``{"cancelled": true}``. After each chunk
   its outcomes are added to the campaign's counters (what ``Campaigns.status`` reads).
7. A completed batch counts towards its campaign (``campaigns.CampaignLifecycle``); the
   last one to finish — here, or failed for good, counted by the worker's ``failed``
   hook — has exactly one ``campaign-complete`` analytics job enqueued.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..campaigns import CampaignControl, CampaignLifecycle
from ..config import Settings
from ..connection import AnyRedis
from ..engine.errors import DelayedError, RateLimited, UnrecoverableError
from ..engine.scripts import ScriptLane
from ..errors import JobValidationError
from ..jobs import EmailJobData, Recipient, validate_job
from ..keyspace import SMTP_BREAKER
from ..services.circuit import CircuitBreaker
from ..services.dkim import DkimSigner
from ..services.links import Links
from ..services.ratelimit import SendRateLimiter
from ..services.render import (
    CompiledCampaign,
    Content,
    ContentError,
    RenderError,
    message_id,
)
from ..services.send_ledger import CampaignLedger, Claim
from ..services.smtp import SmtpPermanentError, SmtpTransientError
from ..services.verp import BounceAddresses
from .acceptances import SentRecorder
from .delivery_rows import RowWriter
from .email_types import (  # re-exported: the processor's public types
    BatchResult,
    CampaignSource,
    Delivery,
    DeliveryRecorder,
    MailTransport,
    SuppressionSource,
    TransientSendError,
)

__all__ = ["PAUSE_RECHECK_MS", "BatchResult", "CampaignSource", "Delivery",
           "DeliveryRecorder", "EmailProcessor", "MailTransport", "SuppressionSource",
           "TransientSendError"]

log = logging.getLogger(__name__)

_MAX_INLINE_WAIT_MS = 1000  # per job, across its chunks
PAUSE_RECHECK_MS = 15_000  # a parked batch of a paused campaign looks again after this
# Recipients per chunk: the campaign's state, the ledger claim, the send rate and the
# counters are visited once per chunk. At 50, those visits cost about a tenth of the path.
CHUNK_SIZE = 50



async def _or_empty(lookup: Awaitable[set[str]] | None) -> set[str]:
    return set() if lookup is None else await lookup


class EmailProcessor:
    """Processes ``email`` queue jobs. Create one per worker process.

    Args:
        settings: mail settings (sender, rates, unsubscribe URL and signing secret).
        redis: command client (ledger, rate limits, breaker).
        transport: sends messages (the SMTP pool).
        campaigns: stored campaign content.
        deliveries: where delivery records go (optional).
        lifecycle: counts completed batches towards their campaign and completes it
            (by default with ``redis``, recording completion without enqueuing).
        breaker: the shared SMTP circuit breaker.
        suppressions: the tenant's suppression list, asked once per batch job of a
            stored campaign (transactional mail with inline content is not suppressed).
        wake: moves a parked batch (by job id) back to wait — what ``resume`` does to the
            campaign's delayed batches; lets a batch that parked while its campaign was
            being resumed wake itself (``campaigns.manage.wake_batch``).

    Raises:
        DkimKeyError: a DKIM key in ``settings`` cannot be used (they are parsed here,
            once per process).
    """

    def __init__(
        self,
        settings: Settings,
        redis: AnyRedis,
        transport: MailTransport,
        campaigns: CampaignSource,
        *,
        deliveries: DeliveryRecorder | None = None,
        suppressions: SuppressionSource | None = None,
        lifecycle: CampaignLifecycle | None = None,
        breaker: CircuitBreaker | None = None,
        wake: Callable[[str], Awaitable[object]] | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.transport = transport
        self.campaigns = campaigns
        self.deliveries = deliveries
        self.suppressions = suppressions
        self.links = Links.from_settings(settings)
        self.bounces = BounceAddresses.from_settings(settings, self.links.signer)
        self.wake = wake
        # The chunks' script calls (state, claim, send rate, breaker, counters) share one
        # pipelined connection: redis-py's per-command pool and parser cost more than
        # the scripts themselves on this path.
        self.scripts = ScriptLane(redis, timeout_s=settings.redis_command_timeout_s)
        self.lifecycle = lifecycle or CampaignLifecycle(redis, settings.key_prefix)
        self.breaker = breaker or CircuitBreaker(
            redis, settings.key_prefix, SMTP_BREAKER, threshold=settings.smtp_breaker_threshold,
            cooldown_ms=settings.smtp_breaker_cooldown_ms, scripts=self.scripts)
        self.limiter = SendRateLimiter(
            redis, settings.key_prefix, global_rate=settings.emails_per_second,
            tenant_rate=settings.emails_per_second_per_tenant, scripts=self.scripts)
        # A chunk takes its tokens at once: no larger than either rate's second.
        self.chunk_size = max(1, min(chunk_size, settings.emails_per_second_per_tenant,
                                     settings.emails_per_second))
        # A claim lives as long as the job's lock: if the worker dies, both expire.
        self.claim_ttl_ms = settings.queue_config("email").lock_duration_ms
        self._compiled: dict[tuple[str, str], CompiledCampaign] = {}
        self.signer = DkimSigner.from_settings(settings)
        # Accepted by the SMTP server, not yet in the ledger (Redis was unreachable): a
        # re-run in this process must not claim those again (``sent.unrecorded``).
        self.sent = SentRecorder(redis)
        self.rows = RowWriter()

    async def close(self) -> None:
        """Close the connection of the chunks' script calls (the other clients are the
        caller's)."""
        await self.scripts.close()

    # --- the processor -----------------------------------------------------------------
    async def __call__(self, job: Any) -> dict[str, Any]:
        try:
            data = validate_job(EmailJobData, job.data, self.settings.job_limits,
                                size=getattr(job, "data_bytes", None))
        except JobValidationError as exc:
            raise UnrecoverableError(str(exc)) from None
        # Transactional mail (inline content) is not a managed campaign: no state, no
        # counters (and no keys left behind per receipt).
        control = None if data.content is not None else CampaignControl(
            self.redis, self.settings.key_prefix, data.tenant_id, data.campaign_id,
            scripts=self.scripts)
        result = BatchResult()
        if control is not None and await self._stopped(job, control, result):
            return await self._cancelled(job, data, result)
        campaign = await self._compile(data)
        decision = await self.breaker.allow()
        if not decision.allowed:
            raise RateLimited(max(decision.retry_after_ms, 1))

        ledger = CampaignLedger(self.redis, self.settings.key_prefix, data.tenant_id,
                                data.campaign_id, claim_ttl_ms=self.claim_ttl_ms,
                                scripts=self.scripts)
        token = f"{job.id}:{job.attempts_made}:{uuid.uuid4().hex[:8]}"
        recipients = data.recipients
        total = len(recipients)
        started = time.monotonic()
        listed = self._lookup_suppressed(data)
        ended = False
        try:
            for start in range(0, total, self.chunk_size):
                # The campaign's state, once per chunk: paused parks the job, cancelled
                # ends it.
                if start and control is not None and await self._stopped(job, control,
                                                                         result):
                    return await self._cancelled(job, data, result)
                chunk = recipients[start:start + self.chunk_size]
                before = (result.sent, result.bounced, result.failed, result.suppressed)
                try:
                    opened_ms = await self._send_chunk(job, data, campaign, ledger, token,
                                                       chunk, listed, result, started)
                finally:
                    if control is not None:
                        await control.record_chunk(result.sent - before[0],
                                                   result.bounced - before[1],
                                                   result.failed - before[2],
                                                   result.suppressed - before[3])
                await job.update_progress({"done": min(start + len(chunk), total),
                                           "total": total, "sent": result.sent})
                if opened_ms:
                    raise RateLimited(opened_ms)
            ended = True
        finally:
            if listed is not None and not listed.done():
                listed.cancel()
            # The campaign's completion reads the rows: they are in before it counts.
            await RowWriter.wait(result.row_writes, failing=not ended)

        if result.deferred == 0 and result.busy:
            await job.move_to_delayed(int(time.time() * 1000) + result.busy_ms + 50)
            raise DelayedError(f"{result.busy} recipients are claimed by another attempt; "
                               f"resuming in {result.busy_ms} ms")
        if result.deferred:
            raise TransientSendError(
                f"{result.deferred} of {total} recipients deferred (will retry): "
                f"{result.last_transient}")
        await self.lifecycle.batch_finished(data.tenant_id, data.campaign_id, str(job.id))
        return result.to_dict()

    # --- steps -------------------------------------------------------------------------
    async def _stopped(self, job: Any, control: CampaignControl, result: BatchResult
                       ) -> bool:
        """Read the campaign's state (one Redis call). Paused: park the job in delayed
        until ``resume`` promotes it (or ``PAUSE_RECHECK_MS`` passes) — no attempt is
        used, and the claims of earlier chunks are settled already. Returns whether the
        campaign was cancelled."""
        state = await control.gate()
        if state == "paused":
            await job.move_to_delayed(int(time.time() * 1000) + PAUSE_RECHECK_MS)
            # Resumed between the gate and the move? ``resume`` writes the state, then
            # wakes the delayed batches: if this read still says paused, its wake comes
            # after the move and finds this job; if not, wake it here.
            if self.wake is not None and await control.gate() != "paused":
                await self.wake(str(job.id))
            raise DelayedError(f"campaign {control.state_key} is paused; {result.sent} "
                               "sent by this attempt")
        return state == "cancelled"

    async def _cancelled(self, job: Any, data: EmailJobData, result: BatchResult
                         ) -> dict[str, Any]:
        """End a batch of a cancelled campaign: completed, counted as finished (its rows
        written first)."""
        await RowWriter.wait(result.row_writes, failing=False)
        await self.lifecycle.batch_finished(data.tenant_id, data.campaign_id, str(job.id))
        return {**result.to_dict(), "cancelled": True}

    async def _compile(self, data: EmailJobData) -> CompiledCampaign:
        key = (data.tenant_id, data.campaign_id)
        if data.content is None and key in self._compiled:
            return self._compiled[key]
        if data.content is not None:
            c = data.content
            content: Content | None = Content(subject=c.subject, html=c.html, text=c.text,
                                              from_addr=c.from_, reply_to=c.reply_to)
        else:
            content = await self.campaigns.get_content(data.tenant_id, data.campaign_id)
        if content is None:
            raise UnrecoverableError(
                f"campaign {data.campaign_id!r} of tenant {data.tenant_id!r} has no "
                "content: it is not in the store and the job carries no inline content")
        try:
            compiled = CompiledCampaign(
                data.tenant_id, data.campaign_id, content,
                default_from=self.settings.mail_from,
                links=self.links, bounces=self.bounces)
        except ContentError as exc:
            raise UnrecoverableError(str(exc)) from None
        if data.content is None:
            if len(self._compiled) > 256:
                self._compiled.clear()
            self._compiled[key] = compiled
        return compiled

    def _lookup_suppressed(self, data: EmailJobData) -> asyncio.Task[set[str]] | None:
        """Ask the suppression list about the whole batch: one store query per job, not
        per chunk (the first chunk awaits it alongside its ledger claim). ``None`` for
        transactional mail with inline content, which is not suppressed."""
        if self.suppressions is None or data.content is not None or not data.recipients:
            return None
        return asyncio.ensure_future(self.suppressions.suppressed(
            data.tenant_id, [r.email for r in data.recipients]))

    async def _send_chunk(
        self, job: Any, data: EmailJobData, campaign: CompiledCampaign,
        ledger: CampaignLedger, token: str, chunk: Sequence[Recipient],
        listed: Awaitable[set[str]] | None, result: BatchResult, started: float,
    ) -> int:
        """Send one chunk. Returns the breaker's open time in ms if it opened, else 0.

        Raises:
            DelayedError: the send rate is exhausted for longer than the job may wait;
                the job was parked in delayed (claims released, nothing lost).
        """
        pending = self.sent.unrecorded
        if pending:
            unrecorded = [r for r in chunk if (ledger.key, r.email) in pending]
            if unrecorded:
                result.busy += len(unrecorded)
                result.busy_ms = max(result.busy_ms, 500)
                chunk = [r for r in chunk if (ledger.key, r.email) not in pending]
        emails = [r.email for r in chunk]
        # The batch's suppression lookup (the store) overlaps the first claim (Redis).
        claims, blocked = await asyncio.gather(ledger.claim(token, emails),
                                               _or_empty(listed))
        attempt = job.attempts_made + 1
        to_send: list[Recipient] = []
        deliveries: list[Delivery] = []
        earlier: list[Delivery] = []
        for recipient, (claim, busy_ms) in zip(chunk, claims, strict=True):
            if claim in (Claim.DONE, Claim.BOUNCED):
                result.skipped += 1
                earlier.append(Delivery(
                    data.tenant_id, data.campaign_id, recipient.email,
                    "sent" if claim is Claim.DONE else "bounced", attempt,
                    message_id=message_id(data.tenant_id, data.campaign_id,
                                          recipient.email, campaign.domain),
                    smtp_response="recorded by an earlier attempt"))
            elif claim is Claim.BUSY:
                # Claimed by an attempt that may have died mid-send: come back when its
                # claim expires, without using an attempt of this job.
                result.busy += 1
                result.busy_ms = max(result.busy_ms, busy_ms)
            else:
                if claim is Claim.RECLAIMED:
                    result.reclaimed += 1
                to_send.append(recipient)
        if blocked:
            to_send = self._drop_suppressed(data, to_send, blocked, attempt, result,
                                            deliveries)
        if to_send:
            # At most a moment of waiting per job in all; beyond that the job is parked
            # so that other tenants' jobs get the worker slot.
            budget = _MAX_INLINE_WAIT_MS - int((time.monotonic() - started) * 1000)
            wait = await self.limiter.take(data.tenant_id, len(to_send),
                                           max_wait_ms=max(budget, 0))
            if wait:
                await ledger.release(token, [r.email for r in to_send])
                await job.move_to_delayed(int(time.time() * 1000) + wait)
                raise DelayedError(f"send rate reached; resuming in {wait} ms")

        outcomes = await asyncio.gather(*(
            self._send_one(data, campaign, ledger, r, attempt) for r in to_send))
        transient: list[str] = []
        for recipient, delivery in zip(to_send, outcomes, strict=True):
            deliveries.append(delivery)
            if delivery.status == "sent":
                result.sent += 1
            elif delivery.status == "bounced":
                result.bounced += 1
            elif delivery.status == "failed":
                result.failed += 1
                result.errors.append(f"{recipient.email}: {delivery.smtp_response}")
            else:  # deferred
                transient.append(recipient.email)
                result.deferred += 1
                result.last_transient = delivery.smtp_response or "transient failure"
        await ledger.mark_bounced([d.email for d in deliveries
                                   if d.status in ("bounced", "failed", "suppressed")])
        await ledger.release(token, transient)
        if self.deliveries is not None:
            # Written behind the sends (``RowWriter``). ``earlier``: an attempt killed
            # between sending and recording may have left no row for these; they are
            # filled in (existing rows are kept as they are).
            result.row_writes.append(self.rows.add(
                self.deliveries, [d for d in deliveries if d.status != "deferred"],
                earlier))

        opened_ms = 0
        if transient and len(transient) == len(to_send):
            for _ in transient:
                opened_ms = max(opened_ms, await self.breaker.record_failure())
        elif to_send:
            await self.breaker.record_success()
        return opened_ms

    @staticmethod
    def _drop_suppressed(data: EmailJobData, to_send: list[Recipient], blocked: set[str],
                         attempt: int, result: BatchResult, deliveries: list[Delivery]
                         ) -> list[Recipient]:
        """The claimed recipients on the suppression list (``blocked``, one lookup for the
        batch) are recorded *suppressed* — settled in the ledger like a bounce: never
        retried — and left out."""
        for recipient in to_send:
            if recipient.email in blocked:
                result.suppressed += 1
                deliveries.append(Delivery(
                    data.tenant_id, data.campaign_id, recipient.email, "suppressed", attempt,
                    smtp_response="on the tenant's suppression list: not sent"))
        return [r for r in to_send if r.email not in blocked]

    async def _send_one(self, data: EmailJobData, campaign: CompiledCampaign,
                        ledger: CampaignLedger, recipient: Recipient, attempt: int
                        ) -> Delivery:
        def outcome(status: str, **extra: Any) -> Delivery:
            return Delivery(data.tenant_id, data.campaign_id, recipient.email, status,
                            attempt, **extra)

        try:
            mid, message = campaign.render(recipient)
            if self.signer is not None:
                message = self.signer.sign(data.tenant_id, message)
        except RenderError as exc:
            return outcome("failed", smtp_response=str(exc))
        try:
            reply = await self.transport.send(campaign.envelope_for(recipient.email),
                                              recipient.email, message)
        except SmtpPermanentError as exc:
            return outcome("bounced", message_id=mid, smtp_code=exc.code,
                           smtp_response=exc.message[:500])
        except SmtpTransientError as exc:
            return outcome("deferred", message_id=mid, smtp_code=exc.code or None,
                           smtp_response=str(exc)[:500])
        # Accepted: record it before anything else can fail.
        await self.sent.record(ledger.key, recipient.email)
        return outcome("sent", message_id=mid, smtp_code=250, smtp_response=reply[:500])
