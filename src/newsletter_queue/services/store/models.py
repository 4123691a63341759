"""Table definitions: SQLAlchemy 2 declarative models with typed ``Mapped`` columns.

The same models serve SQLite and PostgreSQL, so only portable types are used:
timestamps are stored as UTC without a zone (``UTCDateTime``) — SQLite has no zone-aware
type, and a zone-less UTC column makes ``EXTRACT(hour …)`` and day ranges mean the same
on both backends; JSON is ``JSONB`` on PostgreSQL and JSON text on SQLite.

Natural keys are unique constraints — (tenant, campaign) for campaigns and their stats,
(tenant, campaign, email) for deliveries, (tenant, day) for daily stats, job id for AI
results — because every writer runs at least once and writes by upsert on them.

Table names carry an ``nlq_`` prefix so the store can share a PostgreSQL database with
the platform's own tables (which may well have a ``campaigns`` table of their own).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

_ID = String(128)
_EMAIL = String(320)
_JSON = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_PK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC ``datetime`` in Python, zone-less UTC in the database."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""

    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy's hook
        datetime: UTCDateTime(),
        date: Date(),
    }


class Campaign(Base):
    __tablename__ = "nlq_campaigns"
    __table_args__ = (UniqueConstraint("tenant_id", "campaign_id", name="uq_campaign"),)

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(_ID)
    campaign_id: Mapped[str] = mapped_column(_ID)
    subject: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    from_addr: Mapped[str | None] = mapped_column(String(512))
    reply_to: Mapped[str | None] = mapped_column(String(512))
    headers: Mapped[dict[str, str]] = mapped_column(_JSON)
    created_at: Mapped[datetime]


class Delivery(Base):
    __tablename__ = "nlq_deliveries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "campaign_id", "email", name="uq_delivery"),
        Index("ix_delivery_tenant_updated", "tenant_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(_ID)
    campaign_id: Mapped[str] = mapped_column(_ID)
    email: Mapped[str] = mapped_column(_EMAIL)
    status: Mapped[str] = mapped_column(String(16))
    smtp_code: Mapped[int | None]
    smtp_response: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(998))
    attempt: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Event(Base):
    __tablename__ = "nlq_events"
    __table_args__ = (
        Index("ix_event_campaign", "tenant_id", "campaign_id", "type"),
        Index("ix_event_tenant_time", "tenant_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(_ID)
    campaign_id: Mapped[str] = mapped_column(_ID)
    recipient: Mapped[str] = mapped_column(_EMAIL)
    type: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime]


class CampaignStatsRow(Base):
    __tablename__ = "nlq_campaign_stats"
    __table_args__ = (
        UniqueConstraint("tenant_id", "campaign_id", name="uq_campaign_stats"),
        Index("ix_campaign_stats_started", "tenant_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(_ID)
    campaign_id: Mapped[str] = mapped_column(_ID)
    sent: Mapped[int]
    failed: Mapped[int]
    bounced: Mapped[int]
    unique_opens: Mapped[int]
    open_rate: Mapped[float] = mapped_column(Float)
    unique_clicks: Mapped[int]
    click_rate: Mapped[float] = mapped_column(Float)
    unsubscribes: Mapped[int]
    complaints: Mapped[int]
    suppressed: Mapped[int] = mapped_column(server_default="0")
    top_links: Mapped[list[dict[str, Any]]] = mapped_column(_JSON)
    best_send_hour: Mapped[int | None]
    trend: Mapped[dict[str, Any]] = mapped_column(_JSON)
    # When the campaign started sending: orders campaigns for the trend.
    started_at: Mapped[datetime | None]
    computed_at: Mapped[datetime]


class DailyTenantStatsRow(Base):
    __tablename__ = "nlq_daily_tenant_stats"
    __table_args__ = (UniqueConstraint("tenant_id", "day", name="uq_daily_tenant_stats"),)

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(_ID)
    day: Mapped[date]
    sent: Mapped[int]
    failed: Mapped[int]
    bounced: Mapped[int]
    opens: Mapped[int]
    unique_opens: Mapped[int]
    clicks: Mapped[int]
    unique_clicks: Mapped[int]
    unsubscribes: Mapped[int]
    complaints: Mapped[int]
    campaigns: Mapped[int]
    computed_at: Mapped[datetime]


class AIResult(Base):
    __tablename__ = "nlq_ai_results"
    __table_args__ = (
        UniqueConstraint("job_id", name="uq_ai_result_job"),
        Index("ix_ai_result_tenant", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(256))
    tenant_id: Mapped[str] = mapped_column(_ID)
    type: Mapped[str] = mapped_column(String(64))
    input: Mapped[Any] = mapped_column(_JSON)
    output: Mapped[Any] = mapped_column(_JSON)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime]


class DeadLetter(Base):
    __tablename__ = "nlq_dead_letters"
    __table_args__ = (Index("ix_dead_letter_queue", "queue", "failed_at"),)

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(256))
    job_name: Mapped[str] = mapped_column(String(256))
    data: Mapped[Any] = mapped_column(_JSON)
    error: Mapped[str] = mapped_column(Text)
    stacktrace: Mapped[list[str]] = mapped_column(_JSON)
    attempts: Mapped[int]
    failed_at: Mapped[datetime]
    replayed_at: Mapped[datetime | None]
    replay_job_id: Mapped[str | None] = mapped_column(String(256))


class Suppression(Base):
    """The tenant's suppression list; an address is known by its hash (see
    ``records.address_hash``), its text is dropped when it is erased."""

    __tablename__ = "nlq_suppressions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "email_hash", name="uq_suppression"),
        Index("ix_suppression_tenant_time", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(_ID)
    email_hash: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(_EMAIL)
    reason: Mapped[str] = mapped_column(String(16))
    campaign_id: Mapped[str | None] = mapped_column(_ID)
    created_at: Mapped[datetime]
