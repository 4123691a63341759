"""Analytics aggregation in SQL: the queries behind ``campaign-complete`` and
``daily-aggregation``.

Counting happens in the database (``GROUP BY``, ``COUNT(DISTINCT …)``, ``UNION``) so a
campaign with a million events costs a few index scans, not a million Python objects.
Every query is portable between SQLite and PostgreSQL: a distinct count over two columns
is written as a grouped subquery, because SQLite has no ``COUNT(DISTINCT (a, b))``;
``EXTRACT(hour …)`` is compiled by SQLAlchemy to ``strftime`` on SQLite.

Definitions (the same for a campaign and for a tenant's day):

- *sent* — distinct recipients the SMTP server accepted: a ``sent`` delivery record or a
  ``sent`` event (events may come from another sender through the dev API); a recipient
  whose message bounced asynchronously afterwards is still counted as sent.
- *bounced* — distinct recipients with a ``bounced`` delivery record or event.
- *failed* — delivery records with status ``failed`` (never handed to the server).
- *suppressed* — delivery records with status ``suppressed`` (on the tenant's
  suppression list when the batch came to them: never sent).
- *unique opens/clicks*, *unsubscribes*, *complaints* — distinct recipients with such an
  event; open and click rates are divided by *sent* (0 when nothing was sent).
- *best send hour* — the UTC hour of day in which most distinct recipients opened.
- *trend* — compared with the tenant's ``TREND_WINDOW`` most recent campaigns that
  started sending before this one (by first delivery), so recomputing an old campaign
  later gives the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    extract,
    func,
    literal,
    select,
    true,
    tuple_,
    union,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import CampaignStatsRow, Delivery, Event
from .records import CampaignStats, CampaignTrend, DailyTenantStats, LinkClicks

TOP_LINKS = 10
TREND_WINDOW = 10
_RATE_DIGITS = 6


def rate(part: int, whole: int) -> float:
    """``part / whole`` rounded to 6 digits; 0 when ``whole`` is 0."""
    return round(part / whole, _RATE_DIGITS) if whole else 0.0


def _in_range(column: Any, start: datetime | None, end: datetime | None) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return and_(true(), *conditions)


def _scope(
    tenant_id: str,
    campaign_ids: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """WHERE clauses selecting deliveries and events of some campaigns (and a time range)."""
    deliveries = and_(
        Delivery.tenant_id == tenant_id,
        Delivery.campaign_id.in_(campaign_ids),
        _in_range(Delivery.updated_at, start, end),
    )
    events = and_(
        Event.tenant_id == tenant_id,
        Event.campaign_id.in_(campaign_ids),
        _in_range(Event.occurred_at, start, end),
    )
    return deliveries, events


def _recipients_with(
    status: str, deliveries: ColumnElement[bool], events: ColumnElement[bool]
) -> CompoundSelect[Any]:
    """Distinct (campaign, recipient) pairs with a delivery status or event of that name."""
    return union(
        select(Delivery.campaign_id, Delivery.email.label("recipient"))
        .where(deliveries, Delivery.status == status),
        select(Event.campaign_id, Event.recipient)
        .where(events, Event.type == status),
    )


async def _count(conn: AsyncConnection, query: Select[Any] | CompoundSelect[Any]) -> int:
    sub = query.subquery()
    return int(await conn.scalar(select(func.count()).select_from(sub)) or 0)


async def _event_counts(
    conn: AsyncConnection, events: ColumnElement[bool]
) -> dict[str, tuple[int, int]]:
    """``{type: (events, distinct (campaign, recipient) pairs)}``."""
    pairs = (
        select(Event.type, Event.campaign_id, Event.recipient, func.count().label("n"))
        .where(events)
        .group_by(Event.type, Event.campaign_id, Event.recipient)
        .subquery()
    )
    rows = await conn.execute(
        select(pairs.c.type, func.sum(pairs.c.n), func.count()).group_by(pairs.c.type)
    )
    return {str(t): (int(total), int(unique)) for t, total, unique in rows}


async def _delivery_count(
    conn: AsyncConnection, deliveries: ColumnElement[bool], status: str
) -> int:
    return int(await conn.scalar(
        select(func.count()).select_from(Delivery).where(deliveries, Delivery.status == status)
    ) or 0)


async def compute_campaign_stats(
    conn: AsyncConnection, tenant_id: str, campaign_id: str, now: datetime
) -> CampaignStats:
    """Aggregate one campaign's deliveries and events (reads only)."""
    deliveries, events = _scope(tenant_id, [campaign_id])
    sent = await _count(conn, _recipients_with("sent", deliveries, events))
    bounced = await _count(conn, _recipients_with("bounced", deliveries, events))
    failed = await _delivery_count(conn, deliveries, "failed")
    suppressed = await _delivery_count(conn, deliveries, "suppressed")
    counts = await _event_counts(conn, events)

    def unique(kind: str) -> int:
        return counts.get(kind, (0, 0))[1]

    clicks = func.count().label("clicks")
    links = await conn.execute(
        select(Event.url, clicks)
        .where(events, Event.type == "clicked", Event.url.is_not(None))
        .group_by(Event.url)
        .order_by(clicks.desc(), Event.url)
        .limit(TOP_LINKS)
    )
    top_links = tuple(LinkClicks(str(url), int(n)) for url, n in links)

    hour = extract("hour", Event.occurred_at).label("hour")
    openers = func.count(Event.recipient.distinct()).label("openers")
    best = (await conn.execute(
        select(hour, openers)
        .where(events, Event.type == "opened")
        .group_by(hour)
        .order_by(openers.desc(), hour)
        .limit(1)
    )).first()

    started_at = await conn.scalar(select(func.min(union(
        select(func.min(Delivery.created_at).label("t")).where(deliveries),
        select(func.min(Event.occurred_at).label("t")).where(events, Event.type == "sent"),
    ).subquery().c.t)))

    unique_opens, unique_clicks = unique("opened"), unique("clicked")
    open_rate, click_rate = rate(unique_opens, sent), rate(unique_clicks, sent)
    trend = await _trend(conn, tenant_id, campaign_id, started_at, open_rate, click_rate)
    return CampaignStats(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        sent=sent,
        failed=failed,
        bounced=bounced,
        unique_opens=unique_opens,
        open_rate=open_rate,
        unique_clicks=unique_clicks,
        click_rate=click_rate,
        unsubscribes=unique("unsubscribed"),
        complaints=unique("complained"),
        top_links=top_links,
        best_send_hour=None if best is None else int(best.hour),
        trend=trend,
        suppressed=suppressed,
        started_at=started_at,
        computed_at=now,
    )


async def _trend(
    conn: AsyncConnection,
    tenant_id: str,
    campaign_id: str,
    started_at: datetime | None,
    open_rate: float,
    click_rate: float,
) -> CampaignTrend:
    s = CampaignStatsRow
    previous = select(s.open_rate, s.click_rate).where(
        s.tenant_id == tenant_id, s.campaign_id != campaign_id, s.started_at.is_not(None)
    )
    if started_at is not None:
        previous = previous.where(
            tuple_(s.started_at, s.campaign_id) < tuple_(literal(started_at, s.started_at.type),
                                                        literal(campaign_id))
        )
    window = previous.order_by(s.started_at.desc(), s.campaign_id.desc()).limit(
        TREND_WINDOW).subquery()
    n, avg_open, avg_click = (await conn.execute(
        select(func.count(), func.avg(window.c.open_rate), func.avg(window.c.click_rate))
    )).one()
    if not n:
        return CampaignTrend(0, None, None, None, None)
    avg_open = round(float(avg_open), _RATE_DIGITS)
    avg_click = round(float(avg_click), _RATE_DIGITS)
    return CampaignTrend(
        previous_campaigns=int(n),
        previous_avg_open_rate=avg_open,
        previous_avg_click_rate=avg_click,
        open_rate_delta=round(open_rate - avg_open, _RATE_DIGITS),
        click_rate_delta=round(click_rate - avg_click, _RATE_DIGITS),
    )


async def active_campaigns(
    conn: AsyncConnection, tenant_id: str, start: datetime, end: datetime
) -> list[str]:
    """Campaigns of the tenant with a delivery or an event in ``[start, end)``, sorted."""
    query = union(
        select(Delivery.campaign_id).where(
            Delivery.tenant_id == tenant_id, _in_range(Delivery.updated_at, start, end)),
        select(Event.campaign_id).where(
            Event.tenant_id == tenant_id, _in_range(Event.occurred_at, start, end)),
    ).subquery()
    rows = await conn.execute(select(query.c.campaign_id).order_by(query.c.campaign_id))
    return [str(c) for (c,) in rows]


async def daily_counts(
    conn: AsyncConnection,
    tenant_id: str,
    day: date,
    start: datetime,
    end: datetime,
    campaign_ids: Sequence[str],
) -> DailyTenantStats:
    """The counts of some of the tenant's campaigns in ``[start, end)`` (one chunk)."""
    deliveries, events = _scope(tenant_id, campaign_ids, start, end)
    counts = await _event_counts(conn, events)

    def total(kind: str) -> int:
        return counts.get(kind, (0, 0))[0]

    def unique(kind: str) -> int:
        return counts.get(kind, (0, 0))[1]

    return DailyTenantStats(
        tenant_id=tenant_id,
        day=day,
        sent=await _count(conn, _recipients_with("sent", deliveries, events)),
        failed=await _delivery_count(conn, deliveries, "failed"),
        bounced=await _count(conn, _recipients_with("bounced", deliveries, events)),
        opens=total("opened"),
        unique_opens=unique("opened"),
        clicks=total("clicked"),
        unique_clicks=unique("clicked"),
        unsubscribes=unique("unsubscribed"),
        complaints=unique("complained"),
        campaigns=len(campaign_ids),
    )
