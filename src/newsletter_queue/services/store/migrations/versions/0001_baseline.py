"""Baseline: the records store's tables as release 0.1.0 created them.

Revision ID: 0001
Revises: (none)

Written out in SQLAlchemy Core here, not imported from ``models.py`` (which moves on with
later revisions), and kept as ``metadata()`` because start-up compares a database made
by release 0.1.0 — its tables, no version table — with it before stamping that
database at this revision (``migrate.py``). The DDL is emitted with ``op.execute`` so
that ``alembic upgrade --sql`` prints it too. ``tests/integration/store/test_migrations.py``
checks that this emits exactly that release's statements (``tests/fixtures/schema/``)
and that the schema at head is ``models.py``'s.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.String(128)
_EMAIL = sa.String(320)
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # BIGSERIAL / INTEGER PRIMARY KEY
_TIME = sa.DateTime(timezone=False)  # UTC without a zone


def _id() -> sa.Column[int]:
    return sa.Column("id", _PK, primary_key=True, autoincrement=True)


def _column(name: str, type_: sa.types.TypeEngine[Any], *, null: bool = False
            ) -> sa.Column[Any]:
    return sa.Column(name, type_, nullable=null)


def _counts(*names: str) -> list[sa.Column[Any]]:
    return [_column(name, sa.Integer()) for name in names]


def metadata() -> sa.MetaData:
    """The seven tables of release 0.1.0, with their indexes and unique constraints."""
    m = sa.MetaData()
    sa.Table(
        "nlq_campaigns", m, _id(),
        _column("tenant_id", _ID), _column("campaign_id", _ID),
        _column("subject", sa.Text()), _column("html", sa.Text(), null=True),
        _column("text", sa.Text(), null=True),
        _column("from_addr", sa.String(512), null=True),
        _column("reply_to", sa.String(512), null=True),
        _column("headers", _JSON), _column("created_at", _TIME),
        sa.UniqueConstraint("tenant_id", "campaign_id", name="uq_campaign"),
    )
    sa.Table(
        "nlq_deliveries", m, _id(),
        _column("tenant_id", _ID), _column("campaign_id", _ID), _column("email", _EMAIL),
        _column("status", sa.String(16)), _column("smtp_code", sa.Integer(), null=True),
        _column("smtp_response", sa.Text(), null=True),
        _column("message_id", sa.String(998), null=True), _column("attempt", sa.Integer()),
        _column("created_at", _TIME), _column("updated_at", _TIME),
        sa.UniqueConstraint("tenant_id", "campaign_id", "email", name="uq_delivery"),
        sa.Index("ix_delivery_tenant_updated", "tenant_id", "updated_at"),
    )
    sa.Table(
        "nlq_events", m, _id(),
        _column("tenant_id", _ID), _column("campaign_id", _ID),
        _column("recipient", _EMAIL), _column("type", sa.String(16)),
        _column("url", sa.Text(), null=True), _column("occurred_at", _TIME),
        sa.Index("ix_event_campaign", "tenant_id", "campaign_id", "type"),
        sa.Index("ix_event_tenant_time", "tenant_id", "occurred_at"),
    )
    sa.Table(
        "nlq_campaign_stats", m, _id(),
        _column("tenant_id", _ID), _column("campaign_id", _ID),
        *_counts("sent", "failed", "bounced", "unique_opens"),
        _column("open_rate", sa.Float()), *_counts("unique_clicks"),
        _column("click_rate", sa.Float()), *_counts("unsubscribes", "complaints"),
        _column("top_links", _JSON), _column("best_send_hour", sa.Integer(), null=True),
        _column("trend", _JSON), _column("started_at", _TIME, null=True),
        _column("computed_at", _TIME),
        sa.UniqueConstraint("tenant_id", "campaign_id", name="uq_campaign_stats"),
        sa.Index("ix_campaign_stats_started", "tenant_id", "started_at"),
    )
    sa.Table(
        "nlq_daily_tenant_stats", m, _id(),
        _column("tenant_id", _ID), _column("day", sa.Date()),
        *_counts("sent", "failed", "bounced", "opens", "unique_opens", "clicks",
                 "unique_clicks", "unsubscribes", "complaints", "campaigns"),
        _column("computed_at", _TIME),
        sa.UniqueConstraint("tenant_id", "day", name="uq_daily_tenant_stats"),
    )
    sa.Table(
        "nlq_ai_results", m, _id(),
        _column("job_id", sa.String(256)), _column("tenant_id", _ID),
        _column("type", sa.String(64)), _column("input", _JSON), _column("output", _JSON),
        _column("provider", sa.String(64)), _column("model", sa.String(256), null=True),
        _column("created_at", _TIME),
        sa.UniqueConstraint("job_id", name="uq_ai_result_job"),
        sa.Index("ix_ai_result_tenant", "tenant_id", "created_at"),
    )
    sa.Table(
        "nlq_dead_letters", m, _id(),
        _column("queue", sa.String(64)), _column("job_id", sa.String(256)),
        _column("job_name", sa.String(256)), _column("data", _JSON),
        _column("error", sa.Text()), _column("stacktrace", _JSON),
        _column("attempts", sa.Integer()), _column("failed_at", _TIME),
        _column("replayed_at", _TIME, null=True),
        _column("replay_job_id", sa.String(256), null=True),
        sa.Index("ix_dead_letter_queue", "queue", "failed_at"),
    )
    return m


def statements() -> list[sa.schema.ExecutableDDLElement]:
    """Each table's CREATE TABLE, then its CREATE INDEXes by name (release 0.1.0's DDL)."""
    out: list[sa.schema.ExecutableDDLElement] = []
    for table in metadata().sorted_tables:
        out.append(CreateTable(table))
        out.extend(CreateIndex(i) for i in sorted(table.indexes, key=lambda i: str(i.name)))
    return out


def upgrade() -> None:
    for statement in statements():
        op.execute(statement)


def downgrade() -> None:
    for table in reversed(metadata().sorted_tables):
        op.execute(DropTable(table))  # its indexes go with it
