"""What ``Campaigns`` returns: a send's outcome, a campaign's status, a page of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..services.store import CampaignStats
from .control import CampaignState, Snapshot
from .recipients import RowError


@dataclass(frozen=True)
class SendResult:
    """What ``Campaigns.send`` did.

    Attributes:
        created: whether this call enqueued the campaign (``False``: it was not a draft,
            so nothing was added; ``state`` says what it is).
        state: the campaign's state after the call.
        recipients: recipients enqueued (valid, each address once).
        batches: batch jobs of the campaign.
        duplicates: rows whose address appeared earlier (collapsed).
        skipped: bad rows left out by a partial send (the first 100).
    """

    created: bool
    state: CampaignState
    recipients: int = 0
    batches: int = 0
    duplicates: int = 0
    skipped: list[RowError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; ``skipped`` as ``{"row", "field", "message"}`` objects."""
        return asdict(self)


@dataclass(frozen=True)
class CampaignStatus:
    """One campaign as the workers have recorded it (the same in every process).

    ``total`` is the recipients enqueued; ``suppressed`` those skipped because they are
    on the tenant's suppression list (never sent); ``pending`` those not yet sent,
    bounced, failed or suppressed (for a cancelled campaign: never to be sent). ``rate``
    is messages per second over the last 10–15 s; ``eta_seconds`` is ``pending / rate``
    while sending (``None`` when not sending or nothing was sent lately). ``stats``
    (opens, clicks, top links) once ``campaign-complete`` has computed them.
    """

    tenant_id: str
    campaign_id: str
    state: CampaignState
    total: int
    sent: int
    bounced: int
    failed: int
    suppressed: int
    pending: int
    batches_done: int
    batches_total: int
    rate: float
    eta_seconds: float | None
    send_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    stats: CampaignStats | None = None
    suppressions: dict[str, int] = field(default_factory=dict)
    """Addresses this campaign put on the suppression list, by reason (``unsubscribed``,
    ``hard-bounce``, ``complaint``): its unsubscribes, bounces and complaints so far."""

    @property
    def finished(self) -> bool:
        """Completed or cancelled, with every batch finished."""
        return self.finished_at is not None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("send_at", "started_at", "finished_at"):
            value = getattr(self, name)
            out[name] = value.isoformat() if value else None
        out["stats"] = self.stats.to_dict() if self.stats is not None else None
        return out

    @classmethod
    def from_snapshot(cls, tenant_id: str, campaign_id: str, snap: Snapshot,
                      state: CampaignState, stats: CampaignStats | None,
                      suppressions: dict[str, int] | None = None) -> CampaignStatus:
        total = snap.recipients
        pending = max(total - snap.sent - snap.bounced - snap.failed - snap.suppressed, 0)
        eta = round(pending / snap.rate, 1) if state == "sending" and snap.rate > 0 else None
        return cls(
            tenant_id=tenant_id, campaign_id=campaign_id, state=state, total=total,
            sent=snap.sent, bounced=snap.bounced, failed=snap.failed,
            suppressed=snap.suppressed, pending=pending,
            batches_done=snap.batches_done, batches_total=snap.batches_total,
            rate=snap.rate, eta_seconds=eta,
            send_at=_time(snap.send_at_ms), started_at=_time(snap.started_at_ms),
            finished_at=_time(snap.completed_at_ms), stats=stats,
            suppressions=dict(suppressions or {}))


@dataclass(frozen=True)
class CampaignSummary:
    """One line of ``Campaigns.list``."""

    campaign_id: str
    subject: str
    created_at: datetime | None
    status: CampaignStatus

    def to_dict(self) -> dict[str, Any]:
        """``campaign_id``, ``subject``, ``created_at`` (ISO) and ``status``
        (``CampaignStatus.to_dict()``)."""
        return {"campaign_id": self.campaign_id, "subject": self.subject,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "status": self.status.to_dict()}


@dataclass(frozen=True)
class CampaignPage:
    """A page of a tenant's campaigns, newest first."""

    items: list[CampaignSummary]
    page: int
    page_size: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        """``page``, ``page_size``, ``total`` (campaigns of the tenant) and
        ``campaigns`` (``CampaignSummary.to_dict()`` each, newest first)."""
        return {"page": self.page, "page_size": self.page_size, "total": self.total,
                "campaigns": [item.to_dict() for item in self.items]}


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None
