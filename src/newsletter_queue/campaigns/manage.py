"""``Campaigns``: save, send, watch, pause, resume and cancel a tenant's campaigns.

Handed out by ``QueueManager.campaigns``; uses the manager's Redis client and records
store. Content lives in the store (``nlq_campaigns``); state and live counters in Redis
(``control``), written by the workers, so every process reads the same numbers::

    await manager.campaigns.save("t1", "june", subject="Hi {{ name }}", text="…")
    await manager.campaigns.send("t1", "june", [{"email": "a@example.com"}])
    status = await manager.campaigns.status("t1", "june")

States: *draft* (saved, not sent) → *scheduled* (``send_at`` in the future) → *sending*
→ *completed*; *paused* and back; *cancelled* (nothing more is sent; its remaining
batches complete at once with ``{"cancelled": true}`` and ``campaign-complete`` still
computes the stats of what was sent).
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..connection import AnyRedis
from ..enqueue import add_bulk
from ..errors import CampaignNotFoundError, CampaignStateError, FieldError, JobValidationError
from ..job_options import JobOptions, to_bullmq_options
from ..jobs import Recipient, id_errors
from ..queues import EMAIL_BULK_PRIORITY, QueueName
from ..services.links import Links
from ..services.render import CompiledCampaign, Content, ContentError
from ..services.signing import Signer
from ..services.store import CampaignRecord, DeliveryRecord, Store
from .control import TTL_S, CampaignControl, CampaignState
from .lifecycle import batch_job, batch_job_id
from .recipients import RecipientsError, rows_from_iterable
from .spool import SpooledRecipients, spool_recipients
from .status import CampaignPage, CampaignStatus, CampaignSummary, SendResult

if TYPE_CHECKING:
    from ..manager import QueueManager

BULK_GROUP = 100
"""Batches per ``addBulk`` call (one MULTI/EXEC each): a million recipients in 100-row
batches are 100 calls. The bulk adds are about a seventh of a send's time
(``bench/campaign_send.py --profile``), spent per job rather than per call."""

MAX_SEND_AHEAD_S = TTL_S - 2 * 24 * 3600
"""How far ahead ``send_at`` may be (28 days): a campaign's state in Redis lives 30 days
from its last write, and a scheduled campaign's is written when it is sent."""
FOLLOW_INTERVAL_S = 1.0
"""How often ``Campaigns.follow`` reads a campaign's status."""

_CONTENT_FIELDS = ("subject", "html", "text", "from_addr", "reply_to", "headers")


class Campaigns:
    """A tenant's campaigns, end to end (see the module docstring).

    Args:
        manager: the ``QueueManager`` whose Redis client and store are used.
    """

    def __init__(self, manager: QueueManager) -> None:
        self.manager = manager
        self.settings = manager.settings
        # Compiling a template to check it renders no link: a throw-away key will do.
        self._check_links = Links(Signer(secrets.token_bytes(32)),
                                  unsubscribe_base_url=self.settings.unsubscribe_base_url)

    # --- content -----------------------------------------------------------------------
    async def save(self, tenant_id: str, campaign_id: str, *, subject: str,
                   html: str | None = None, text: str | None = None,
                   from_addr: str | None = None, reply_to: str | None = None,
                   headers: Mapping[str, str] | None = None) -> CampaignRecord:
        """Store a draft's content, compiled and checked as at send time.

        Raises:
            JobValidationError: bad ids.
            ContentError: a template or header is refused; ``field`` and ``line`` say
                where (also in the message).
            CampaignStateError: the campaign is no longer a draft.
        """
        _check_ids(tenant_id, campaign_id)
        content = Content(subject=subject, html=html, text=text, from_addr=from_addr,
                          reply_to=reply_to, headers=dict(headers or {}))
        self._compile(tenant_id, campaign_id, content)
        state = await self._redis_state(tenant_id, campaign_id)
        if state != "draft":
            raise CampaignStateError(tenant_id, campaign_id, state, "edit")
        record = CampaignRecord(tenant_id=tenant_id, campaign_id=campaign_id,
                                subject=subject, html=html, text=text, from_addr=from_addr,
                                reply_to=reply_to, headers=dict(headers or {}))
        await (await self._store()).upsert_campaign(record)
        return record

    def _compile(self, tenant_id: str, campaign_id: str, content: Content) -> None:
        try:
            CompiledCampaign(tenant_id, campaign_id, content,
                             default_from=self.settings.mail_from,
                             links=self._check_links)
        except ContentError as exc:
            raise self._locate(tenant_id, campaign_id, content, exc) from None

    def _locate(self, tenant_id: str, campaign_id: str, content: Content,
                error: ContentError) -> ContentError:
        """The error again, naming the field (each one compiled alone) and the line."""
        if not content.html and not content.text:
            return ContentError(str(error), field="text")
        for name in _CONTENT_FIELDS:
            value = getattr(content, name)
            if not value:
                continue
            probe = Content(**{"subject": "x", "text": "x", name: value})
            try:
                CompiledCampaign(tenant_id, campaign_id, probe,
                                 default_from=self.settings.mail_from,
                                 links=self._check_links)
            except ContentError as exc:
                cause = exc.__context__
                line = getattr(cause, "lineno", None)
                where = f"{name}, line {line}" if line else name
                return ContentError(f"{where}: {exc}", field=name, line=line)
        return error

    # --- sending -----------------------------------------------------------------------
    async def send(self, tenant_id: str, campaign_id: str,
                   recipients: Iterable[Recipient | Mapping[str, Any]]
                   | Iterable[tuple[int, Mapping[str, Any]]], *,
                   send_at: datetime | None = None, partial: bool = False,
                   batch_size: int | None = None) -> SendResult:
        """Enqueue a saved draft for ``recipients``, in batches.

        ``recipients``: ``Recipient`` objects or mappings (``email``, ``name``,
        ``personalizations``), or ``(row_number, mapping)`` rows (what the file readers
        yield). The rows are read once: checked and spooled to a temporary file
        (``spool_recipients``), then enqueued from the spool once all were checked — so
        an open handle or a generator is fine and memory stays bounded. That pass runs
        in a worker thread, so the event loop keeps serving. Addresses are collapsed
        case-blind (the first row wins). With ``send_at`` in the future the batches are
        delayed to that instant (state *scheduled*; a naive datetime is taken as UTC).
        Idempotent: a campaign that is not a draft gets nothing added
        (``created=False``); a send interrupted while adding its batches is finished by
        calling again with the same recipients.

        Raises:
            CampaignNotFoundError: nothing saved under that id.
            JobValidationError: ``send_at`` more than ``MAX_SEND_AHEAD_S`` ahead.
            RecipientsError: bad rows (with row numbers) and ``partial`` is false —
                nothing was enqueued. With ``partial`` the good rows are sent.
            JobValidationError: no valid recipient, or a bad ``batch_size``.
        """
        _check_ids(tenant_id, campaign_id)
        size = self.settings.default_batch_size if batch_size is None else batch_size
        limit = self.settings.job_limits.max_recipients_per_job
        if not 1 <= size <= limit:
            raise JobValidationError("send", [FieldError("batch_size", f"must be 1..{limit}")])
        if send_at is not None and _utc(send_at).timestamp() > time.time() + MAX_SEND_AHEAD_S:
            raise JobValidationError("send", [FieldError(
                "send_at", f"at most {MAX_SEND_AHEAD_S // 86400} days ahead")])
        record = await (await self._store()).get_campaign(tenant_id, campaign_id)
        if record is None:
            raise CampaignNotFoundError(tenant_id, campaign_id)
        async with self.manager.redis() as client:
            control = self._control(tenant_id, campaign_id, client)
            state = await self._redis_state(tenant_id, campaign_id)
            if state != "draft" and (await control.snapshot()).enqueued:
                return SendResult(created=False, state=state)
            self._compile(tenant_id, campaign_id, Content(
                subject=record.subject, html=record.html, text=record.text,
                from_addr=record.from_addr, reply_to=record.reply_to,
                headers=dict(record.headers)))

            spooled = await _spool_in_thread(recipients)
            with spooled:
                check = spooled.check
                if check.errors and not partial:
                    raise RecipientsError(check.errors, check.errors_truncated)
                if check.valid == 0:
                    raise JobValidationError("send", [FieldError(
                        "recipients", "at least one valid recipient needed")])
                now_ms = int(time.time() * 1000)
                at_ms = int(_utc(send_at).timestamp() * 1000) if send_at is not None else 0
                delayed = at_ms > now_ms
                batches = math.ceil(check.valid / size)
                started = await control.start("scheduled" if delayed else "sending",
                                              check.valid, batches, at_ms)
                if started == 0:
                    return SendResult(created=False,
                                      state=(await control.snapshot()).state)
                opts: JobOptions = {"priority": EMAIL_BULK_PRIORITY}
                if delayed:
                    opts["delay"] = at_ms - now_ms
                await self._enqueue(client, tenant_id, campaign_id, spooled.batches(size),
                                    size, to_bullmq_options(opts))
            await control.mark_enqueued()
        return SendResult(created=True, state="scheduled" if delayed else "sending",
                          recipients=check.valid, batches=batches,
                          duplicates=check.duplicates, skipped=builtins.list(check.errors))

    async def _enqueue(self, client: AnyRedis, tenant_id: str, campaign_id: str,
                       batches: Iterable[builtins.list[dict[str, Any]]], size: int,
                       opts: Mapping[str, Any]) -> None:
        """Add the batches (lists of at most ``size`` wire dicts) ``BULK_GROUP`` at a time
        (ids are deterministic: a repeat adds nothing)."""
        it = iter(batches)
        index = 0
        max_bytes = self.settings.job_limits.max_payload_bytes
        queue = await self.manager.queue(QueueName.EMAIL)
        while True:
            group = []
            for chunk in itertools.islice(it, BULK_GROUP):
                group.append(batch_job(tenant_id, campaign_id, index, chunk, size,
                                       opts, max_bytes, first=index * size))
                index += 1
            if not group:
                return
            await add_bulk(client, queue, group)

    # --- watching ----------------------------------------------------------------------
    async def status(self, tenant_id: str, campaign_id: str) -> CampaignStatus:
        """The campaign's state and numbers (see ``CampaignStatus``).

        Raises:
            CampaignNotFoundError: neither saved nor ever sent.
        """
        async with self.manager.redis() as client:
            snap = await CampaignControl(client, self.settings.key_prefix, tenant_id,
                                         campaign_id).snapshot()
        store = await self._store()
        state: CampaignState = snap.state
        if not snap.known:
            if await store.has_campaign_results(tenant_id, campaign_id):
                state = "completed"  # sent more than 30 days ago: its Redis keys expired
            elif await store.get_campaign(tenant_id, campaign_id) is None:
                raise CampaignNotFoundError(tenant_id, campaign_id)
        stats = None
        if state in ("completed", "cancelled"):
            stats = await store.get_campaign_stats(tenant_id, campaign_id)
        suppressions = await store.suppression_counts(tenant_id, campaign_id) \
            if state != "draft" else {}
        return CampaignStatus.from_snapshot(tenant_id, campaign_id, snap, state, stats,
                                            suppressions)

    async def follow(self, tenant_id: str, campaign_id: str, *,
                     interval: float = FOLLOW_INTERVAL_S) -> AsyncIterator[CampaignStatus]:
        """The campaign's status every ``interval`` seconds, ending with the first one
        that is completed with its stats (``campaign-complete`` has run — it needs an
        ``analytics`` worker), or cancelled (nothing more will be sent; the stats of what
        was sent come once its remaining batches have run). What ``--follow`` draws.

        Raises:
            CampaignNotFoundError: neither saved nor ever sent.
            CampaignStateError: a draft (nothing to follow until it is sent).
        """
        while True:
            status = await self.status(tenant_id, campaign_id)
            if status.state == "draft":
                raise CampaignStateError(tenant_id, campaign_id, "draft", "follow")
            yield status
            if status.state == "cancelled" or (status.finished and status.stats is not None):
                return
            await asyncio.sleep(interval)

    async def wait(self, tenant_id: str, campaign_id: str, *,
                   timeout: float | None = None,  # noqa: ASYNC109 — asyncio.wait_for's
                   interval: float = FOLLOW_INTERVAL_S) -> CampaignStatus:
        """The campaign's status once it is completed with its stats, or cancelled
        (see ``follow``).

        Raises:
            TimeoutError: not finished within ``timeout`` seconds.
            CampaignNotFoundError, CampaignStateError: as ``follow``.
        """
        async with asyncio.timeout(timeout):
            async for status in self.follow(tenant_id, campaign_id, interval=interval):
                last = status
        return last

    async def list(self, tenant_id: str, page: int = 1, page_size: int = 20) -> CampaignPage:
        """The tenant's campaigns, newest first, with state and headline numbers."""
        if page < 1 or not 1 <= page_size <= 100:
            raise JobValidationError("list", [FieldError(
                "page" if page < 1 else "page_size", "page ≥ 1, page_size 1..100")])
        store = await self._store()
        records = await store.list_campaigns(tenant_id, limit=page_size,
                                             offset=(page - 1) * page_size)
        items = [CampaignSummary(r.campaign_id, r.subject, r.created_at,
                                 await self.status(tenant_id, r.campaign_id))
                 for r in records]
        return CampaignPage(items, page, page_size, await store.count_campaigns(tenant_id))

    async def recipient(self, tenant_id: str, campaign_id: str, email: str
                        ) -> DeliveryRecord | None:
        """The delivery of ``email`` in the campaign (status, SMTP code and response,
        Message-ID, attempt, times), or ``None`` if none was recorded (yet)."""
        return await (await self._store()).get_delivery(tenant_id, campaign_id, email)

    async def recipient_history(self, tenant_id: str, email: str, *, limit: int = 100
                                ) -> builtins.list[DeliveryRecord]:
        """The deliveries of ``email`` across the tenant's campaigns, newest first."""
        return await (await self._store()).deliveries_to(tenant_id, email, limit=limit)

    # --- control -----------------------------------------------------------------------
    async def pause(self, tenant_id: str, campaign_id: str) -> CampaignStatus:
        """Stop sending: running batches stop at their next chunk and wait, parked.

        Raises:
            CampaignStateError: not scheduled or sending.
        """
        await self._move(tenant_id, campaign_id, "paused", ("scheduled", "sending"), "pause")
        return await self.status(tenant_id, campaign_id)

    async def resume(self, tenant_id: str, campaign_id: str) -> CampaignStatus:
        """Send a paused campaign again (its parked batches run at once; before its
        ``send_at`` it is *scheduled* again).

        Raises:
            CampaignStateError: not paused.
        """
        async with self.manager.redis() as client:
            snap = await self._control(tenant_id, campaign_id, client).snapshot()
        future = snap.send_at_ms > time.time() * 1000 and snap.started_at_ms is None
        to: CampaignState = "scheduled" if future else "sending"
        await self._move(tenant_id, campaign_id, to, ("paused",), "resume")
        if not future:
            await self._promote(tenant_id, campaign_id, snap.batches_total)
        return await self.status(tenant_id, campaign_id)

    async def cancel(self, tenant_id: str, campaign_id: str) -> CampaignStatus:
        """Send nothing more. The remaining batches run at once and complete with
        ``{"cancelled": true}``; ``campaign-complete`` computes the stats of what was
        sent.

        Raises:
            CampaignStateError: not scheduled, sending or paused.
        """
        await self._move(tenant_id, campaign_id, "cancelled",
                         ("scheduled", "sending", "paused"), "cancel")
        async with self.manager.redis() as client:
            snap = await self._control(tenant_id, campaign_id, client).snapshot()
        await self._promote(tenant_id, campaign_id, snap.batches_total)
        return await self.status(tenant_id, campaign_id)

    async def _move(self, tenant_id: str, campaign_id: str, to: CampaignState,
                    allowed: tuple[str, ...], action: str) -> None:
        async with self.manager.redis() as client:
            moved, before = await self._control(tenant_id, campaign_id, client).move(
                to, allowed)
        if not moved:
            if before == "draft" and await (await self._store()).get_campaign(
                    tenant_id, campaign_id) is None:
                raise CampaignNotFoundError(tenant_id, campaign_id)
            raise CampaignStateError(tenant_id, campaign_id, before, action)

    async def _promote(self, tenant_id: str, campaign_id: str, batches: int) -> int:
        """Move the campaign's delayed batches to wait; returns how many."""
        delayed_key = self.manager.keys(QueueName.EMAIL).delayed
        ids = [batch_job_id(tenant_id, campaign_id, i) for i in range(batches)]
        promoted = 0
        async with self.manager.redis() as client:
            for start in range(0, len(ids), 1000):
                group = ids[start:start + 1000]
                pipe = client.pipeline(transaction=False)
                for job_id in group:
                    pipe.zscore(delayed_key, job_id)
                scores = await pipe.execute()
                for job_id, score in zip(group, scores, strict=True):
                    if score is not None and await wake_batch(self.manager, job_id):
                        promoted += 1
        return promoted

    # --- helpers -----------------------------------------------------------------------
    def _control(self, tenant_id: str, campaign_id: str, client: AnyRedis
                 ) -> CampaignControl:
        return CampaignControl(client, self.settings.key_prefix, tenant_id, campaign_id)

    async def _redis_state(self, tenant_id: str, campaign_id: str) -> CampaignState:
        async with self.manager.redis() as client:
            snap = await self._control(tenant_id, campaign_id, client).snapshot()
        if not snap.known and await (await self._store()).has_campaign_results(
                tenant_id, campaign_id):
            return "completed"
        return snap.state

    async def _store(self) -> Store:
        return await self.manager.store()


async def wake_batch(manager: QueueManager, job_id: str) -> bool:
    """Move one parked (delayed) batch of the ``email`` queue to wait, so it runs now;
    ``False`` if it was not delayed (running already, or finished)."""
    queue = await manager.queue(QueueName.EMAIL)
    try:
        await queue.backend.promote(job_id)
    except TypeError:  # bullmq's answer for a job that is not delayed
        return False
    return True


async def _spool_in_thread(recipients: Iterable[Any]) -> SpooledRecipients:
    """``spool_recipients`` in a worker thread; if the caller is cancelled (a client
    gone, Ctrl-C) the thread is told to stop, so it does not read the rest of the
    source in the background."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(
            lambda: spool_recipients(_rows(recipients), stop=stop))
    except asyncio.CancelledError:
        stop.set()
        raise


def _check_ids(tenant_id: str, campaign_id: str) -> None:
    errors = id_errors(tenantId=tenant_id, campaignId=campaign_id)
    if errors:
        raise JobValidationError("campaign", errors)


def _rows(recipients: Iterable[Any]) -> Iterable[tuple[int, Mapping[str, Any]]]:
    """Rows as ``(number, mapping)``, for one pass. ``(number, mapping)`` rows (a file
    reader, a generator) are passed through unread; ``Recipient`` objects and mappings
    are numbered from 1 (and held in memory)."""
    if isinstance(recipients, list | tuple):
        return recipients if recipients and _is_row(recipients[0]) else \
            rows_from_iterable(recipients)
    it = iter(recipients)
    first = next(it, None)
    if first is None:
        return []
    ahead = itertools.chain([first], it)
    return ahead if _is_row(first) else rows_from_iterable(ahead)


def _is_row(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
