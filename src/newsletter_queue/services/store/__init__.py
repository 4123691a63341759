"""The records store: campaign content, deliveries, events, stats, AI results and dead
letters in a real database (SQLAlchemy 2 async; a SQLite file by default, PostgreSQL
via ``DATABASE_URL``).

Redis holds jobs while they run; everything that must outlive the queue's retention —
what was sent to whom, what recipients did, the aggregates, failed jobs kept for
replay — lives here. Modules: ``store`` (the ``Store`` repository), ``records`` (the
dataclasses it takes and returns; ``rows`` makes them from query rows), ``lookups`` and
``suppressions`` (mixed into ``Store``: the campaign queries; the suppression list and
erasure), ``models`` (tables), ``migrate`` and ``migrations/`` (the schema's Alembic
revisions, run by ``Store.init()`` and ``newsletter-queue db upgrade``), ``backend``
(engines, SQLite tuning), ``aggregate`` (the analytics SQL) and ``adapters`` (the store as
the email processor's campaign source and delivery recorder).
"""

from __future__ import annotations

from .records import (
    DELIVERY_STATUSES,
    EVENT_TYPES,
    SUPPRESSION_REASONS,
    AIResultRecord,
    CampaignRecord,
    CampaignStats,
    CampaignTrend,
    DailyTenantStats,
    DeadLetterRecord,
    DeliveryRecord,
    DeliveryStatus,
    ErasureResult,
    EventRecord,
    EventType,
    LinkClicks,
    SuppressionReason,
    SuppressionRecord,
    address_hash,
)
from .store import Store

__all__ = [
    "DELIVERY_STATUSES",
    "EVENT_TYPES",
    "SUPPRESSION_REASONS",
    "AIResultRecord",
    "CampaignRecord",
    "CampaignStats",
    "CampaignTrend",
    "DailyTenantStats",
    "DeadLetterRecord",
    "DeliveryRecord",
    "DeliveryStatus",
    "ErasureResult",
    "EventRecord",
    "EventType",
    "LinkClicks",
    "Store",
    "SuppressionReason",
    "SuppressionRecord",
    "address_hash",
]
