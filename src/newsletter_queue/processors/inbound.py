"""The inbound processor: ``inbound-message``, a bounce or a complaint that came back.

Mail to the bounce domain (``POST /api/inbound`` from the MTA, or the dev SMTP sink)
becomes one analytics job carrying the raw message (``jobs.InboundMessageData``). The job:

1. reads it (``services.reports``): a permanent failure, a temporary one, or an ARF
   complaint — or nothing we act on (an auto-reply, a feedback type that is no complaint,
   bytes that are no message);
2. finds whose message it was, trusting only what we signed:
   - a bounce address (``services.verp``) in the envelope recipient, the report's headers,
     ARF's ``Original-Mail-From`` or the original's ``Return-Path``, whose MAC verifies;
     its reference names the delivery (one indexed lookup);
   - else the original message's headers, when the report carries them: ``X-Tenant-ID``,
     ``X-Campaign-ID`` and the recipient count only as the signed ``List-Unsubscribe``
     link (``links.Links``) among them says, and a ``Message-ID`` of ours must be the one
     we make for that delivery. Unsigned ids never suppress anyone;
3. records, once per message and kind however often the report arrives:
   - **permanent** → the address is suppressed (*hard-bounce*, the campaign named), a
     ``bounced`` event, and the delivery becomes *bounced* with the report's diagnostic
     as its SMTP response;
   - **temporary** → a ``deferred`` event only (nothing suppressed);
   - **complaint** → suppressed (*complaint*) and a ``complained`` event.

Whatever is unreadable, unverifiable or names no message we sent completes the job with
``{"recorded": false, "reason": …}`` and records nothing. One case is retried instead: a
bounce address that verifies but whose delivery row is not written yet (a bounce faster
than the batch's bookkeeping) raises ``InboundPendingError`` while attempts remain.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..config import JobLimits, Settings
from ..engine.errors import UnrecoverableError
from ..errors import JobValidationError, NewsletterQueueError
from ..jobs import InboundMessageData, validate_job
from ..queues import ANALYTICS_INBOUND_MESSAGE
from ..services.links import Links
from ..services.render import message_id
from ..services.reports import Report, Unreadable, read_report
from ..services.store import DeliveryRecord, EventRecord, EventType, Store
from ..services.store.records import utcnow
from ..services.verp import BounceAddresses
from .analytics import AnalyticsJob, AnalyticsProcessor

log = logging.getLogger(__name__)

_SENT = frozenset({"sent", "bounced"})  # deliveries whose message went out
_ANGLE = re.compile(r"<([^<>]+)>")
_OUR_MESSAGE_ID = re.compile(r"<[0-9a-f]{40}\.")


class InboundPendingError(NewsletterQueueError):
    """A verified bounce address names a delivery that is not recorded yet: retry."""


@dataclass(frozen=True)
class _Found:
    delivery: DeliveryRecord | None
    via: str = ""
    reason: str = ""
    pending: bool = False


def build_inbound_processors(store: Store, settings: Settings, *,
                             limits: JobLimits | None = None
                             ) -> dict[str, AnalyticsProcessor]:
    """The ``inbound-message`` processor over ``store``, checking with the settings'
    signing secret."""
    links = Links.from_settings(settings)
    bounces = BounceAddresses.from_settings(settings, links.signer)

    async def inbound_message(job: AnalyticsJob) -> dict[str, Any]:
        try:
            data = validate_job(InboundMessageData, job.data, limits)
        except JobValidationError as exc:
            raise UnrecoverableError(str(exc)) from None
        report = read_report(data.raw(), data.rcpt)
        base: dict[str, Any] = {"truncated": data.truncated}
        if isinstance(report, Unreadable):
            return _not_recorded(job, base, report.reason)
        base["kind"] = report.kind
        found = await _identify(store, links, bounces, report)
        if found.delivery is None:
            if found.pending and _attempt(job) < _max_attempts(job):
                raise InboundPendingError(f"{found.reason}; trying again")
            return _not_recorded(job, base, found.reason)
        result = await _record(store, found.delivery, report)
        await job.update_progress(100)
        log.info("inbound %s for %s (campaign %s of tenant %s, via the %s): %s",
                 report.kind, found.delivery.email, found.delivery.campaign_id,
                 found.delivery.tenant_id, found.via, result)
        return {**base, "recorded": True, "via": found.via, **result}

    return {ANALYTICS_INBOUND_MESSAGE: inbound_message}


def _not_recorded(job: AnalyticsJob, base: dict[str, Any], reason: str) -> dict[str, Any]:
    log.info("inbound message %s: nothing recorded: %s", job.id, reason)
    return {**base, "recorded": False, "reason": reason}


def _attempt(job: AnalyticsJob) -> int:
    return int(getattr(job, "attempt", 1))


def _max_attempts(job: AnalyticsJob) -> int:
    return int(getattr(job, "max_attempts", 1))


async def _identify(store: Store, links: Links, bounces: BounceAddresses,
                    report: Report) -> _Found:
    """The delivery the report is about, found through signed data only."""
    found = bounces.find(report.addresses)
    reasons: list[str] = []
    pending = False
    for ref in found.refs:
        rows = await store.deliveries_by_ref(ref)
        if len(rows) > 1:
            reasons.append("the bounce address's reference names more than one delivery")
        elif rows:
            return _sent(rows[0], "bounce address")
        else:
            pending = True
    if report.original is not None:
        signed = _signed_original(links, report.original)
        if isinstance(signed, str):
            reasons.append(signed)
        elif signed is not None:
            delivery = await store.get_delivery(*signed)
            if delivery is not None:
                return _sent(delivery, "signed original headers")
            reasons.append("its signed original headers name no delivery of ours")
    if pending:
        reasons.insert(0, "the bounce address is ours but names no recorded delivery "
                          "(not sent, erased, or not recorded yet)")
    elif found.forged:
        reasons.insert(0, "a bounce address whose signature does not verify (altered, "
                          "forged, or of another installation)")
    if not reasons:
        reasons.append("no bounce address of ours and no signed original headers: "
                       "whose message it was cannot be told")
    return _Found(None, reason="; ".join(reasons), pending=pending)


def _sent(delivery: DeliveryRecord, via: str) -> _Found:
    if delivery.status not in _SENT:
        return _Found(None, reason=f"the delivery was never sent (it is {delivery.status})")
    return _Found(delivery, via=via)


def _signed_original(links: Links, original: Message) -> tuple[str, str, str] | str | None:
    """(tenant, campaign, address) of original headers whose List-Unsubscribe link is
    signed and agrees with their X-Tenant-ID, X-Campaign-ID and Message-ID; a reason
    when they disagree; ``None`` when there is no signed link."""
    for value in original.get_all("list-unsubscribe", []):
        for inside in _ANGLE.findall(str(value)):
            url = re.sub(r"\s+", "", inside)  # a header folded inside the URL
            if not url.startswith(("https://", "http://")):
                continue
            query = parse_qs(urlsplit(url).query)
            target = links.check_unsubscribe(*(query.get(k, [None])[0] for k in (
                "tenant", "campaign", "email", "sig")))
            if target is None:
                continue
            for header, expected in (("x-tenant-id", target.tenant_id),
                                     ("x-campaign-id", target.campaign_id)):
                given = original.get(header)
                if given is not None and str(given).strip() != expected:
                    return f"its {header} does not match its signed unsubscribe link"
            mid = re.sub(r"\s+", "", str(original.get("message-id", "")))
            if _OUR_MESSAGE_ID.match(mid) and mid != message_id(
                    target.tenant_id, target.campaign_id, target.email,
                    mid.rpartition("@")[2].rstrip(">")):
                return "its Message-ID does not match its signed unsubscribe link"
            return target.tenant_id, target.campaign_id, target.email
    return None


async def _record(store: Store, delivery: DeliveryRecord, report: Report
                  ) -> dict[str, Any]:
    """Suppress, mark the delivery and record the event, each at most once."""
    tenant, campaign, email = delivery.tenant_id, delivery.campaign_id, delivery.email
    suppressed = bounced = False
    event: EventType
    if report.kind == "permanent":
        event = "bounced"
        suppressed = bool(await store.suppress(tenant, [email], "hard-bounce",
                                               campaign_id=campaign))
        bounced = await store.mark_bounced(
            tenant, campaign, email, smtp_code=report.smtp_code,
            smtp_response=report.diagnostic or "bounced after the server accepted it "
                                               "(a delivery report without a diagnostic)")
    elif report.kind == "temporary":
        event = "deferred"
    else:
        event = "complained"
        suppressed = bool(await store.suppress(tenant, [email], "complaint",
                                               campaign_id=campaign))
    new_event = not await store.has_event(tenant, campaign, email, event)
    if new_event:
        await store.record_events([EventRecord(tenant, campaign, email, event, utcnow())])
    return {"tenant_id": tenant, "campaign_id": campaign, "recipient": email,
            "suppressed": suppressed, "delivery_bounced": bounced,
            "event": event if new_event else None, "status": report.status,
            "diagnostic": report.diagnostic, "reported": list(report.recipients)}
