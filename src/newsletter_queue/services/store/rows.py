"""Query rows as the records of ``records``: one converter per record that comes out of
the store, shared by ``store`` and ``lookups`` so that each is spelled once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from .records import (
    CampaignRecord,
    CampaignStats,
    CampaignTrend,
    DeadLetterRecord,
    DeliveryRecord,
    LinkClicks,
)


def campaign_record(r: Row[Any]) -> CampaignRecord:
    return CampaignRecord(
        tenant_id=r.tenant_id, campaign_id=r.campaign_id, subject=r.subject, html=r.html,
        text=r.text, from_addr=r.from_addr, reply_to=r.reply_to,
        headers=dict(r.headers or {}), created_at=r.created_at)


def delivery_record(r: Row[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        tenant_id=r.tenant_id, campaign_id=r.campaign_id, email=r.email, status=r.status,
        attempt=r.attempt, message_id=r.message_id, smtp_code=r.smtp_code,
        smtp_response=r.smtp_response, created_at=r.created_at, updated_at=r.updated_at)


def campaign_stats(row: Row[Any]) -> CampaignStats:
    return CampaignStats(
        tenant_id=row.tenant_id, campaign_id=row.campaign_id, sent=row.sent,
        failed=row.failed, bounced=row.bounced, unique_opens=row.unique_opens,
        open_rate=row.open_rate, unique_clicks=row.unique_clicks,
        click_rate=row.click_rate, unsubscribes=row.unsubscribes,
        complaints=row.complaints, suppressed=row.suppressed,
        top_links=tuple(LinkClicks(str(x["url"]), int(x["clicks"]))
                        for x in row.top_links or []),
        best_send_hour=row.best_send_hour,
        trend=CampaignTrend.from_dict(row.trend or {}),
        started_at=row.started_at, computed_at=row.computed_at,
    )


def dead_letter_record(row: Row[Any]) -> DeadLetterRecord:
    values = row._asdict()
    values["stacktrace"] = [str(s) for s in values.get("stacktrace") or []]
    return DeadLetterRecord(**values)
