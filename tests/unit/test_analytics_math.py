"""The pure parts of analytics: day parsing, rates, chunk sums, record conversions."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from newsletter_queue.errors import JobValidationError
from newsletter_queue.processors.analytics import build_analytics_processors, parse_day
from newsletter_queue.services.store import (
    CampaignStats,
    CampaignTrend,
    DailyTenantStats,
    LinkClicks,
    Store,
)
from newsletter_queue.services.store.aggregate import rate
from newsletter_queue.services.store.models import UTCDateTime

NOW = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    (None, date(2026, 2, 28)),  # yesterday, across a month end
    ("yesterday", date(2026, 2, 28)),
    ("today", date(2026, 3, 1)),
    ("2025-12-31", date(2025, 12, 31)),
])
def test_parse_day(value: str | None, expected: date) -> None:
    assert parse_day(value, NOW) == expected


@pytest.mark.parametrize("value", ["31/12/2025", "", "Today", 20251231, ["2025-12-31"]])
def test_parse_day_rejects_names_the_field(value: object) -> None:
    with pytest.raises(JobValidationError) as info:
        parse_day(value, NOW)
    assert info.value.paths == ["data.day"]


def test_rate_rounds_and_guards_zero() -> None:
    assert rate(4, 10) == 0.4
    assert rate(1, 3) == 0.333333
    assert rate(2, 3) == 0.666667
    assert rate(5, 0) == 0.0


def test_daily_chunks_add_up() -> None:
    a = DailyTenantStats("t", date(2026, 3, 1), sent=3, opens=5, unique_opens=2, campaigns=2)
    b = DailyTenantStats("t", date(2026, 3, 1), sent=1, failed=1, opens=1, unique_opens=1,
                         complaints=1, campaigns=1)
    total = a.plus(b)
    assert (total.sent, total.failed, total.opens, total.unique_opens, total.complaints,
            total.campaigns) == (4, 1, 6, 3, 1, 3)
    assert (total.tenant_id, total.day) == ("t", date(2026, 3, 1))


def test_stats_to_dict_is_json() -> None:
    trend = CampaignTrend(2, 0.25, 0.05, 0.15, -0.01)
    stats = CampaignStats(
        tenant_id="t", campaign_id="c", sent=10, failed=0, bounced=1, unique_opens=4,
        open_rate=0.4, unique_clicks=1, click_rate=0.1, unsubscribes=0, complaints=0,
        top_links=(LinkClicks("https://example.com", 3),), best_send_hour=9, trend=trend,
        started_at=NOW, computed_at=NOW)
    out = json.loads(json.dumps(stats.to_dict()))
    assert out["top_links"] == [{"url": "https://example.com", "clicks": 3}]
    assert out["started_at"] == "2026-03-01T00:05:00+00:00"
    assert CampaignTrend.from_dict(out["trend"]) == trend
    assert CampaignTrend.from_dict({}) == CampaignTrend(0, None, None, None, None)


def test_utc_datetime_column_stores_utc_and_returns_aware() -> None:
    column = UTCDateTime()
    dialect = sqlite.dialect()
    plus_two = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert column.process_bind_param(plus_two, dialect) == datetime(2026, 3, 1, 10, 0)
    assert column.process_bind_param(datetime(2026, 3, 1, 10), dialect) == datetime(
        2026, 3, 1, 10)  # naive means UTC
    assert column.process_result_value(datetime(2026, 3, 1, 10), dialect) == datetime(
        2026, 3, 1, 10, tzinfo=UTC)
    assert column.process_bind_param(None, dialect) is None


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        build_analytics_processors(Store("sqlite:///:memory:"), chunk_size=0)
