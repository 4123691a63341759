"""The store's public records: plain frozen dataclasses going in and coming out.

ORM objects never leave the store. Callers build these records (the email processor's
delivery outcomes, events posted to the dev API, dead letters from the worker's failed
hook) and get them back from queries; they hold JSON-able values only, and
``to_dict()`` gives the form the dev API and the CLI render.

Timestamps are timezone-aware UTC on the way out. A naive ``datetime`` handed in is
taken to be UTC (that is how the store keeps them: see ``models.UTCDateTime``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

DeliveryStatus = Literal["sent", "failed", "bounced", "suppressed"]
EventType = Literal[
    "sent", "delivered", "bounced", "opened", "clicked", "unsubscribed", "complained"
]
SuppressionReason = Literal["unsubscribed", "hard-bounce", "complaint", "manual"]
DELIVERY_STATUSES: frozenset[str] = frozenset(get_args(DeliveryStatus))
EVENT_TYPES: frozenset[str] = frozenset(get_args(EventType))
SUPPRESSION_REASONS: frozenset[str] = frozenset(get_args(SuppressionReason))


def address_hash(email: str) -> str:
    """How the suppression list knows an address: SHA-256 (hex) of it lowercased and
    stripped. An erased address is kept as this alone, so it is still never mailed."""
    return hashlib.sha256(email.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _to_dict(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """A campaign's content, as the email processor renders it."""

    tenant_id: str
    campaign_id: str
    subject: str
    html: str | None = None
    text: str | None = None
    from_addr: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """The outcome of sending one campaign to one recipient.

    Field names match the email processor's ``Delivery`` so its outcomes convert
    one to one. Re-recording the same (tenant, campaign, email) replaces the outcome.
    """

    tenant_id: str
    campaign_id: str
    email: str
    status: DeliveryStatus
    attempt: int = 1
    message_id: str | None = None
    smtp_code: int | None = None
    smtp_response: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.status not in DELIVERY_STATUSES:
            raise ValueError(
                f"status: {self.status!r} is not one of {', '.join(sorted(DELIVERY_STATUSES))}"
            )

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """Something a recipient did (or that happened to their message)."""

    tenant_id: str
    campaign_id: str
    recipient: str
    type: EventType
    occurred_at: datetime
    url: str | None = None

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(
                f"type: {self.type!r} is not one of {', '.join(sorted(EVENT_TYPES))}"
            )

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, slots=True)
class SuppressionRecord:
    """An address the tenant's campaigns never mail again, and why.

    ``email`` is ``None`` once the address was erased (only ``email_hash`` is kept);
    ``campaign_id`` is the campaign the unsubscribe, bounce or complaint came from.
    """

    tenant_id: str
    email: str | None
    email_hash: str
    reason: SuppressionReason
    campaign_id: str | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """What ``Store.erase_address`` removed: deliveries and events of the address, and
    whether its suppression entry was created (else an existing one lost its address)."""

    deliveries: int
    events: int
    suppression_created: bool

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, slots=True)
class LinkClicks:
    """Clicks on one URL of a campaign."""

    url: str
    clicks: int


@dataclass(frozen=True, slots=True)
class CampaignTrend:
    """How a campaign compares with the tenant's previous campaigns.

    ``previous_campaigns`` is how many were compared (the most recent ones that started
    before this one). Averages and deltas are ``None`` when there is nothing to compare.
    """

    previous_campaigns: int
    previous_avg_open_rate: float | None
    previous_avg_click_rate: float | None
    open_rate_delta: float | None
    click_rate_delta: float | None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CampaignTrend:
        def number(name: str) -> float | None:
            value = raw.get(name)
            return None if value is None else float(value)

        return cls(
            previous_campaigns=int(raw.get("previous_campaigns") or 0),
            previous_avg_open_rate=number("previous_avg_open_rate"),
            previous_avg_click_rate=number("previous_avg_click_rate"),
            open_rate_delta=number("open_rate_delta"),
            click_rate_delta=number("click_rate_delta"),
        )


@dataclass(frozen=True, slots=True)
class CampaignStats:
    """The aggregate row of one campaign (what ``campaign-complete`` computes)."""

    tenant_id: str
    campaign_id: str
    sent: int
    failed: int
    bounced: int
    unique_opens: int
    open_rate: float
    unique_clicks: int
    click_rate: float
    unsubscribes: int
    complaints: int
    top_links: tuple[LinkClicks, ...]
    best_send_hour: int | None
    trend: CampaignTrend
    started_at: datetime | None
    computed_at: datetime
    suppressed: int = 0
    """Recipients not sent because they were on the tenant's suppression list."""

    def to_dict(self) -> dict[str, Any]:
        out = _to_dict(self)
        out["top_links"] = [{"url": link.url, "clicks": link.clicks}
                            for link in self.top_links]
        out["trend"] = self.trend.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class DailyTenantStats:
    """One tenant's activity on one UTC day (what ``daily-aggregation`` computes).

    ``unique_opens``/``unique_clicks`` count distinct (campaign, recipient) pairs;
    ``campaigns`` counts campaigns with any delivery or event that day.
    """

    tenant_id: str
    day: date
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    opens: int = 0
    unique_opens: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    unsubscribes: int = 0
    complaints: int = 0
    campaigns: int = 0
    computed_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    def plus(self, other: DailyTenantStats) -> DailyTenantStats:
        """The counts of two chunks of one rollup added up.

        Chunks are disjoint sets of campaigns, so even the distinct (campaign,
        recipient) counts add up exactly.
        """
        summed = {name: getattr(self, name) + getattr(other, name) for name in _DAILY_COUNTS}
        return dataclasses.replace(self, **summed)


_DAILY_COUNTS = tuple(f.name for f in dataclasses.fields(DailyTenantStats)
                      if f.name not in ("tenant_id", "day", "computed_at"))


@dataclass(frozen=True, slots=True)
class AIResultRecord:
    """The result of one AI job. ``id`` is set by the store."""

    job_id: str
    tenant_id: str
    type: str
    input: Any
    output: Any
    provider: str
    model: str | None = None
    created_at: datetime | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A job that failed for good, kept for inspection and replay. ``id`` is set by the store."""

    queue: str
    job_id: str
    job_name: str
    data: Any
    error: str
    stacktrace: list[str] = field(default_factory=list)
    attempts: int = 0
    failed_at: datetime | None = None
    replayed_at: datetime | None = None
    replay_job_id: str | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)
