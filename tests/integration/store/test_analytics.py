"""The analytics processors on a real database (SQLite and PostgreSQL), hand-built data.

Jobs are a small stand-in class with what the processors use (``id``, ``name``,
``data``, ``update_progress``), recording every progress value.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from newsletter_queue.engine import UnrecoverableError
from newsletter_queue.processors.analytics import build_analytics_processors
from newsletter_queue.services.store import DeliveryRecord, EventRecord, Store

DAY = date(2026, 3, 10)
T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


class StandInJob:
    """Just enough of a job for the analytics processors."""

    def __init__(self, name: str, data: dict[str, Any], job_id: str = "job-1") -> None:
        self.id = job_id
        self.name = name
        self.data = data
        self.progress: list[Any] = []

    async def update_progress(self, value: Any) -> None:
        self.progress.append(value)


def job_data(tenant: str, campaign: str, kind: str, **data: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"campaignId": campaign, "tenantId": tenant, "eventType": kind}
    if data:
        out["data"] = data
    return out


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def seed_campaign(store: Store, tenant: str = "t1", campaign: str = "c1") -> None:
    """10 sent, 2 bounced, 1 failed; 4 unique openers (7 opens); clicks on 3 links."""
    def addr(i: int) -> str:
        return f"u{i}@example.com"

    deliveries = [DeliveryRecord(tenant, campaign, addr(i), "sent", created_at=T0)
                  for i in range(10)]
    deliveries += [DeliveryRecord(tenant, campaign, addr(i), "bounced", smtp_code=550,
                                  created_at=T0) for i in (10, 11)]
    deliveries.append(DeliveryRecord(tenant, campaign, addr(12), "failed", created_at=T0))
    await store.record_deliveries(deliveries)

    def ev(i: int, kind: str, when: datetime, url: str | None = None) -> EventRecord:
        return EventRecord(tenant, campaign, addr(i), kind, when, url=url)  # type: ignore[arg-type]

    a, b, c = "https://example.com/a", "https://example.com/b", "https://example.com/c"
    await store.record_events([
        # opens: u0, u1, u2 at 09:xx (u0 three times), u3 at 14:xx (twice)
        ev(0, "opened", at(9, 1)), ev(0, "opened", at(9, 30)), ev(0, "opened", at(15)),
        ev(1, "opened", at(9, 5)), ev(2, "opened", at(9, 50)),
        ev(3, "opened", at(14, 2)), ev(3, "opened", at(14, 3)),
        # clicks: a ×3 (u0 twice, u1), b ×2 (u2, u0), c ×1 (u2) → 3 unique clickers
        ev(0, "clicked", at(9, 2), a), ev(0, "clicked", at(9, 3), a),
        ev(1, "clicked", at(9, 6), a), ev(2, "clicked", at(9, 51), b),
        ev(0, "clicked", at(15, 1), b), ev(2, "clicked", at(9, 52), c),
        ev(4, "delivered", at(8, 1)),
        ev(5, "unsubscribed", at(10)), ev(5, "unsubscribed", at(10, 1)),
        ev(6, "complained", at(11)),
    ])


async def test_campaign_complete_stats_are_exact(store: Store) -> None:
    await seed_campaign(store)
    await seed_campaign(store, tenant="other-tenant")  # must not leak into t1's numbers
    processors = build_analytics_processors(store)
    job = StandInJob("campaign-complete", job_data("t1", "c1", "campaign-complete"))
    result = await processors["campaign-complete"](job)

    assert {k: result[k] for k in (
        "tenant_id", "campaign_id", "sent", "failed", "bounced", "unique_opens",
        "open_rate", "unique_clicks", "click_rate", "unsubscribes", "complaints",
        "best_send_hour")} == {
        "tenant_id": "t1", "campaign_id": "c1", "sent": 10, "failed": 1, "bounced": 2,
        "unique_opens": 4, "open_rate": 0.4, "unique_clicks": 3, "click_rate": 0.3,
        "unsubscribes": 1, "complaints": 1, "best_send_hour": 9,
    }
    assert result["top_links"] == [
        {"url": "https://example.com/a", "clicks": 3},
        {"url": "https://example.com/b", "clicks": 2},
        {"url": "https://example.com/c", "clicks": 1},
    ]
    assert result["trend"] == {
        "previous_campaigns": 0, "previous_avg_open_rate": None,
        "previous_avg_click_rate": None, "open_rate_delta": None, "click_rate_delta": None,
    }
    assert result["started_at"] == T0.isoformat()
    assert job.progress == [100]

    stored = await store.get_campaign_stats("t1", "c1")
    assert stored is not None
    assert stored.to_dict() == result


async def test_campaign_complete_is_idempotent(store: Store) -> None:
    await seed_campaign(store)
    processor = build_analytics_processors(store)["campaign-complete"]
    first = await processor(StandInJob("campaign-complete",
                                       job_data("t1", "c1", "campaign-complete")))
    row_after_first = await store.get_campaign_stats("t1", "c1")
    second = await processor(StandInJob("campaign-complete",
                                        job_data("t1", "c1", "campaign-complete")))
    row_after_second = await store.get_campaign_stats("t1", "c1")
    assert row_after_first is not None
    assert row_after_second is not None

    def without_time(stats: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in stats.items() if k != "computed_at"}

    assert without_time(first) == without_time(second)
    assert replace(row_after_first, computed_at=T0) == replace(row_after_second,
                                                               computed_at=T0)
    assert row_after_second.computed_at >= row_after_first.computed_at


async def test_sent_and_bounce_events_count_once_with_deliveries(store: Store) -> None:
    """Events from another sender add recipients; the same recipient is not counted twice."""
    await store.record_deliveries([
        DeliveryRecord("t1", "c1", "a@example.com", "sent", created_at=T0),
        DeliveryRecord("t1", "c1", "b@example.com", "sent", created_at=T0),
    ])
    await store.record_events([
        EventRecord("t1", "c1", "a@example.com", "sent", T0),  # same as the delivery
        EventRecord("t1", "c1", "c@example.com", "sent", T0 - timedelta(hours=1)),
        EventRecord("t1", "c1", "b@example.com", "bounced", T0 + timedelta(hours=1)),
        EventRecord("t1", "c1", "c@example.com", "opened", T0),
    ])
    stats = await store.refresh_campaign_stats("t1", "c1")
    assert (stats.sent, stats.bounced, stats.unique_opens) == (3, 1, 1)
    assert stats.open_rate == pytest.approx(0.333333)
    assert stats.started_at == T0 - timedelta(hours=1)  # the earliest send of either kind


async def test_empty_campaign_has_zero_rates(store: Store) -> None:
    stats = await store.refresh_campaign_stats("t1", "nothing-sent")
    assert (stats.sent, stats.open_rate, stats.click_rate) == (0, 0.0, 0.0)
    assert stats.best_send_hour is None
    assert stats.top_links == ()
    assert stats.started_at is None


async def test_top_links_keep_the_ten_most_clicked(store: Store) -> None:
    events = [
        EventRecord("t1", "c1", f"r{n}@example.com", "clicked", T0,
                    url=f"https://example.com/{link:02d}")
        for link in range(12) for n in range(link + 1)
    ]
    # A tie with link 11 (12 clicks) is broken by URL order.
    events += [EventRecord("t1", "c1", f"z{n}@example.com", "clicked", T0,
                           url="https://example.com/zz") for n in range(12)]
    await store.record_events(events)
    stats = await store.refresh_campaign_stats("t1", "c1")
    assert [(x.url.rsplit("/", 1)[1], x.clicks) for x in stats.top_links] == [
        ("11", 12), ("zz", 12), ("10", 11), ("09", 10), ("08", 9), ("07", 8), ("06", 7),
        ("05", 6), ("04", 5), ("03", 4)]


async def campaign_with_rates(store: Store, campaign: str, start: datetime, sent: int,
                              opens: int, clicks: int) -> None:
    await store.record_deliveries([
        DeliveryRecord("t1", campaign, f"{campaign}-{i}@example.com", "sent",
                       created_at=start) for i in range(sent)])
    await store.record_events(
        [EventRecord("t1", campaign, f"{campaign}-{i}@example.com", "opened", start)
         for i in range(opens)]
        + [EventRecord("t1", campaign, f"{campaign}-{i}@example.com", "clicked", start,
                       url="https://example.com/x") for i in range(clicks)])


async def test_trend_against_previous_campaigns(store: Store) -> None:
    processor = build_analytics_processors(store)["campaign-complete"]
    # Three earlier campaigns: open rates 0.2, 0.3, 0.4 and click rates 0.1, 0.0, 0.2.
    await campaign_with_rates(store, "jan", T0 - timedelta(days=60), 10, 2, 1)
    await campaign_with_rates(store, "feb", T0 - timedelta(days=30), 10, 3, 0)
    await campaign_with_rates(store, "mar", T0 - timedelta(days=1), 10, 4, 2)
    for campaign in ("jan", "feb", "mar"):
        await processor(StandInJob("campaign-complete",
                                   job_data("t1", campaign, "campaign-complete")))
    await campaign_with_rates(store, "now", T0, 10, 5, 3)
    result = await processor(StandInJob("campaign-complete",
                                        job_data("t1", "now", "campaign-complete")))
    assert result["trend"] == {
        "previous_campaigns": 3,
        "previous_avg_open_rate": 0.3,
        "previous_avg_click_rate": 0.1,
        "open_rate_delta": 0.2,
        "click_rate_delta": 0.2,
    }
    # Recomputing an older campaign compares it with the ones before it only.
    feb = await processor(StandInJob("campaign-complete",
                                     job_data("t1", "feb", "campaign-complete")))
    assert feb["trend"] == {
        "previous_campaigns": 1, "previous_avg_open_rate": 0.2,
        "previous_avg_click_rate": 0.1, "open_rate_delta": 0.1, "click_rate_delta": -0.1,
    }


async def test_bad_job_data_fails_as_unrecoverable(store: Store) -> None:
    processors = build_analytics_processors(store)
    bad = StandInJob("campaign-complete", {"tenantId": "t1", "eventType": "campaign-complete"})
    with pytest.raises(UnrecoverableError, match="campaignId"):
        await processors["campaign-complete"](bad)
    crossed = StandInJob("campaign-complete", job_data("t1", "c1", "daily-aggregation"))
    with pytest.raises(UnrecoverableError, match="eventType"):
        await processors["campaign-complete"](crossed)
    bad_day = StandInJob("daily-aggregation",
                         job_data("t1", "all", "daily-aggregation", day="10/03/2026"))
    with pytest.raises(UnrecoverableError, match=r"data\.day"):
        await processors["daily-aggregation"](bad_day)
    assert bad_day.progress == []


async def seed_day(store: Store, tenant: str = "t1") -> None:
    """Five campaigns active on DAY, plus activity the day before and after."""
    for n in range(5):
        campaign = f"c{n}"
        await store.record_deliveries(
            [DeliveryRecord(tenant, campaign, f"{campaign}-{i}@example.com", "sent",
                            created_at=at(6)) for i in range(4)]
            + [DeliveryRecord(tenant, campaign, f"{campaign}-x@example.com", "bounced",
                              created_at=at(6))]
            + [DeliveryRecord(tenant, campaign, f"{campaign}-f@example.com", "failed",
                              created_at=at(6))])
        await store.record_events([
            EventRecord(tenant, campaign, f"{campaign}-0@example.com", "opened", at(9)),
            EventRecord(tenant, campaign, f"{campaign}-0@example.com", "opened", at(10)),
            EventRecord(tenant, campaign, f"{campaign}-1@example.com", "opened",
                        at(23, 59)),
            EventRecord(tenant, campaign, f"{campaign}-0@example.com", "clicked", at(9),
                        url="https://example.com/a"),
            EventRecord(tenant, campaign, f"{campaign}-0@example.com", "clicked", at(9),
                        url="https://example.com/b"),
            EventRecord(tenant, campaign, f"{campaign}-2@example.com", "unsubscribed",
                        at(12)),
        ])
    next_day = DAY + timedelta(days=1)
    await store.record_events([
        # midnight belongs to the next day
        EventRecord(tenant, "c0", "c0-2@example.com", "opened", at(0, day=next_day)),
        EventRecord(tenant, "late", "l@example.com", "complained", at(1, day=next_day)),
        EventRecord(tenant, "early", "e@example.com", "opened",
                    at(23, 59, day=DAY - timedelta(days=1))),
    ])
    await store.record_deliveries([DeliveryRecord(
        tenant, "early", "e@example.com", "sent", created_at=at(5, day=DAY - timedelta(days=1)))])


EXPECTED_DAY = {
    "tenant_id": "t1", "day": DAY.isoformat(), "sent": 20, "failed": 5, "bounced": 5,
    "opens": 15, "unique_opens": 10, "clicks": 10, "unique_clicks": 5, "unsubscribes": 5,
    "complaints": 0, "campaigns": 5,
}


async def test_daily_aggregation_in_chunks_with_progress(store: Store) -> None:
    await seed_day(store)
    await seed_day(store, tenant="t2")
    processor = build_analytics_processors(store, chunk_size=2)["daily-aggregation"]
    job = StandInJob("daily-aggregation",
                     job_data("t1", "all", "daily-aggregation", day=DAY.isoformat()))
    result = await processor(job)
    assert job.progress == [40, 80, 100]  # 5 campaigns in chunks of 2
    assert result["chunks"] == 3
    assert {k: result[k] for k in EXPECTED_DAY} == EXPECTED_DAY
    stored = await store.get_daily_stats("t1", DAY)
    assert stored is not None
    assert {k: v for k, v in stored.to_dict().items() if k in EXPECTED_DAY} == EXPECTED_DAY

    # The same numbers in one chunk, and again (idempotent upsert: one row, same counts).
    one_chunk = build_analytics_processors(store, chunk_size=100)["daily-aggregation"]
    again = StandInJob("daily-aggregation",
                       job_data("t1", "all", "daily-aggregation", day=DAY.isoformat()))
    result_again = await one_chunk(again)
    assert again.progress == [100]
    assert {k: result_again[k] for k in EXPECTED_DAY} == EXPECTED_DAY
    restored = await store.get_daily_stats("t1", DAY)
    assert restored is not None
    assert replace(restored, computed_at=None) == replace(stored, computed_at=None)


async def test_daily_aggregation_defaults_to_yesterday_and_knows_today(store: Store) -> None:
    await seed_day(store)
    processors = build_analytics_processors(
        store, clock=lambda: datetime(2026, 3, 11, 0, 30, tzinfo=UTC))
    job = StandInJob("daily-aggregation", job_data("t1", "all", "daily-aggregation"))
    result = await processors["daily-aggregation"](job)
    assert {k: result[k] for k in EXPECTED_DAY} == EXPECTED_DAY

    today = StandInJob("daily-aggregation",
                       job_data("t1", "all", "daily-aggregation", day="today"))
    result = await processors["daily-aggregation"](today)
    assert result["day"] == "2026-03-11"
    assert (result["opens"], result["complaints"], result["campaigns"]) == (1, 1, 2)


async def test_daily_aggregation_of_a_quiet_day(store: Store) -> None:
    processor = build_analytics_processors(store)["daily-aggregation"]
    job = StandInJob("daily-aggregation",
                     job_data("t1", "all", "daily-aggregation", day="2026-01-01"))
    result = await processor(job)
    assert job.progress == [100]
    assert (result["sent"], result["opens"], result["campaigns"], result["chunks"]) == (
        0, 0, 0, 0)
    assert await store.get_daily_stats("t1", date(2026, 1, 1)) is not None
