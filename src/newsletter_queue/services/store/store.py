"""``Store``: the records database behind the processors, the dev API and the CLI.

One class with small, typed methods (a repository layer) over SQLAlchemy 2's async Core:
rows go in and come out as the dataclasses of ``records``, never as ORM objects, so no
caller depends on sessions or lazy loading.

Backends (set up in ``backend``):

- **SQLite** (default, ``sqlite+aiosqlite:///<state_dir>/newsletter-queue.sqlite3``),
  tuned so several worker processes can write to one file.
- **PostgreSQL** (``DATABASE_URL=postgresql+asyncpg://…``; ``postgresql://`` and
  ``postgres://`` are accepted too). ``schema=`` puts the tables in their own schema.

Upserts use each dialect's ``INSERT … ON CONFLICT DO UPDATE`` so that every writer —
all of them run at least once — can repeat itself safely.

The schema is Alembic's (``migrate``; revisions in ``migrations/``): ``init()`` upgrades
the database to this release's head under a cross-process lock or, with
``auto_upgrade=False`` (``db_auto_upgrade``), fails with ``DatabaseUpgradeRequiredError``
when it is behind; ``upgrade()`` is ``newsletter-queue db upgrade``.

The database URL is only ever shown through ``config.mask_url``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ...config import Settings
from . import aggregate, migrate
from .backend import async_url, create_engines, masked, settings_url
from .lookups import CampaignLookups
from .models import (
    AIResult,
    Campaign,
    CampaignStatsRow,
    DailyTenantStatsRow,
    DeadLetter,
    Delivery,
    Event,
)
from .records import (
    AIResultRecord,
    CampaignRecord,
    CampaignStats,
    DailyTenantStats,
    DeadLetterRecord,
    DeliveryRecord,
    EventRecord,
    utcnow,
)
from .rows import campaign_record, campaign_stats, dead_letter_record, delivery_record
from .suppressions import SuppressionList

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store(CampaignLookups, SuppressionList):
    """Campaigns, deliveries, events, stats, AI results and dead letters.

    Args:
        url: SQLAlchemy URL, ``sqlite+aiosqlite:///path`` or
            ``postgresql+asyncpg://user:password@host/db`` (sync spellings are mapped).
        schema: PostgreSQL schema for the tables (created by ``init``); default: the
            connection's ``search_path``.
        echo: log every SQL statement (debugging).
        auto_upgrade: let ``init`` upgrade a database that is behind this release.
    """

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False,
                 auto_upgrade: bool = True) -> None:
        parsed = async_url(url)
        self.url = masked(parsed.render_as_string(hide_password=False))
        self.dialect = parsed.get_backend_name()
        self.schema = schema
        self.auto_upgrade = auto_upgrade
        self._engine, self._writer = create_engines(parsed, schema=schema, echo=echo)
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings, *, schema: str | None = None,
                      echo: bool = False) -> Store:
        """``DATABASE_URL`` if set, else the SQLite file ``settings.sqlite_path()``;
        ``db_auto_upgrade`` decides whether ``init`` may upgrade."""
        return cls(settings_url(settings), schema=schema, echo=echo,
                   auto_upgrade=settings.db_auto_upgrade)

    def __repr__(self) -> str:
        return f"<Store {self.url}>"

    # --- lifecycle ---------------------------------------------------------------------
    async def init(self) -> None:
        """Bring the database (and the schema) to this release's head. Idempotent.

        Raises:
            DatabaseUpgradeRequiredError: behind head and ``auto_upgrade`` is off.
            DatabaseSchemaError: a newer release's revision, or tables not ours.
        """
        if self._ready:
            return
        done = await self._migrate(migrate.prepare, self.auto_upgrade, self.url)
        self._ready = True
        log.info("records store ready: %s (revision %s%s)", self.url, done.head,
                 f", upgraded from {done.before.describe()}" if done.changed else "")

    async def upgrade(self) -> migrate.Upgrade:
        """Upgrade to this release's head, whatever ``auto_upgrade`` says."""
        done = await self._migrate(migrate.upgrade, self.url)
        self._ready = True
        return done

    async def schema_status(self) -> migrate.SchemaStatus:
        """The database's revision and this release's head (changes nothing)."""
        async with self._read() as conn:
            return await conn.run_sync(migrate.status, self.schema)

    async def _migrate(self, step: Callable[..., T], *args: Any) -> T:
        """``step(connection, schema, *args)`` under the cross-process migration lock."""
        async with self._write() as conn:
            await migrate.lock(conn, self.schema)
            return await conn.run_sync(step, self.schema, *args)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()
        self._ready = False

    async def __aenter__(self) -> Store:
        await self.init()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield conn

    def _insert(self, model: Any) -> Any:
        """The dialect's INSERT (which has ``on_conflict_do_update``)."""
        if self.dialect == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    # --- campaigns ---------------------------------------------------------------------
    async def upsert_campaign(self, campaign: CampaignRecord) -> None:
        """Insert or replace a campaign's content (``created_at`` is kept)."""
        stmt = self._insert(Campaign).values(
            tenant_id=campaign.tenant_id, campaign_id=campaign.campaign_id,
            subject=campaign.subject, html=campaign.html, text=campaign.text,
            from_addr=campaign.from_addr, reply_to=campaign.reply_to,
            headers=dict(campaign.headers), created_at=campaign.created_at or utcnow(),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "campaign_id"],
            set_={name: stmt.excluded[name] for name in
                  ("subject", "html", "text", "from_addr", "reply_to", "headers")},
        )
        async with self._write() as conn:
            await conn.execute(stmt)

    async def get_campaign(self, tenant_id: str, campaign_id: str) -> CampaignRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(select(Campaign.__table__).where(
                Campaign.tenant_id == tenant_id, Campaign.campaign_id == campaign_id,
            ))).first()
        return None if row is None else campaign_record(row)

    # --- deliveries --------------------------------------------------------------------
    async def record_deliveries(self, deliveries: Sequence[DeliveryRecord], *,
                                only_missing: bool = False) -> int:
        """Insert or update delivery outcomes in one transaction; returns rows written.

        The last record wins for a (tenant, campaign, email) that appears more than once.
        ``updated_at`` moves only when the status changes, so recording the same outcome
        again (a retried job) changes nothing that the daily rollup reads.
        With ``only_missing`` existing rows are left alone (used to fill in outcomes
        that an attempt killed mid-batch sent but could not record).
        """
        if not deliveries:
            return 0
        now = utcnow()
        rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        for d in deliveries:
            rows[(d.tenant_id, d.campaign_id, d.email)] = {
                "tenant_id": d.tenant_id, "campaign_id": d.campaign_id, "email": d.email,
                "status": d.status, "smtp_code": d.smtp_code,
                "smtp_response": d.smtp_response, "message_id": d.message_id,
                "attempt": d.attempt, "created_at": d.created_at or now,
                "updated_at": d.updated_at or d.created_at or now,
            }
        stmt = self._insert(Delivery)
        if only_missing:
            async with self._write() as conn:
                await conn.execute(stmt.on_conflict_do_nothing(
                    index_elements=["tenant_id", "campaign_id", "email"]),
                    list(rows.values()))
            return len(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "campaign_id", "email"],
            set_={
                "status": stmt.excluded.status,
                "smtp_code": stmt.excluded.smtp_code,
                "smtp_response": stmt.excluded.smtp_response,
                "message_id": stmt.excluded.message_id,
                "attempt": stmt.excluded.attempt,
                "updated_at": case(
                    (Delivery.status != stmt.excluded.status, stmt.excluded.updated_at),
                    else_=Delivery.updated_at,
                ),
            },
        )
        async with self._write() as conn:
            await conn.execute(stmt, list(rows.values()))
        return len(rows)

    def _delivery_filter(self, tenant_id: str, campaign_id: str, status: str | None
                         ) -> list[Any]:
        where = [Delivery.tenant_id == tenant_id, Delivery.campaign_id == campaign_id]
        if status is not None:
            where.append(Delivery.status == status)
        return where

    async def list_deliveries(
        self, tenant_id: str, campaign_id: str, status: str | None = None, *,
        limit: int | None = None, offset: int = 0,
    ) -> list[DeliveryRecord]:
        """A campaign's delivery records in the order they were first recorded."""
        query = (select(Delivery.__table__)
                 .where(*self._delivery_filter(tenant_id, campaign_id, status))
                 .order_by(Delivery.id).offset(offset).limit(limit))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [delivery_record(r) for r in rows]

    async def count_deliveries(
        self, tenant_id: str, campaign_id: str, status: str | None = None
    ) -> int:
        query = select(func.count()).select_from(Delivery).where(
            *self._delivery_filter(tenant_id, campaign_id, status))
        async with self._read() as conn:
            return int(await conn.scalar(query) or 0)

    # --- events ------------------------------------------------------------------------
    async def record_events(self, events: Sequence[EventRecord]) -> int:
        """Insert events in one transaction (one batched statement); returns how many."""
        if not events:
            return 0
        rows = [
            {"tenant_id": e.tenant_id, "campaign_id": e.campaign_id,
             "recipient": e.recipient, "type": e.type, "url": e.url,
             "occurred_at": e.occurred_at}
            for e in events
        ]
        async with self._write() as conn:
            await conn.execute(insert(Event), rows)
        return len(rows)

    async def count_events(
        self, tenant_id: str, campaign_id: str | None = None, type: str | None = None
    ) -> int:
        where = [Event.tenant_id == tenant_id]
        if campaign_id is not None:
            where.append(Event.campaign_id == campaign_id)
        if type is not None:
            where.append(Event.type == type)
        async with self._read() as conn:
            return int(await conn.scalar(
                select(func.count()).select_from(Event).where(*where)) or 0)

    # --- campaign stats ----------------------------------------------------------------
    async def refresh_campaign_stats(self, tenant_id: str, campaign_id: str) -> CampaignStats:
        """Recompute a campaign's stats from its deliveries and events and store them."""
        async with self._read() as conn:
            stats = await aggregate.compute_campaign_stats(conn, tenant_id, campaign_id,
                                                           utcnow())
        values = {
            "tenant_id": tenant_id, "campaign_id": campaign_id,
            "sent": stats.sent, "failed": stats.failed, "bounced": stats.bounced,
            "unique_opens": stats.unique_opens, "open_rate": stats.open_rate,
            "unique_clicks": stats.unique_clicks, "click_rate": stats.click_rate,
            "unsubscribes": stats.unsubscribes, "complaints": stats.complaints,
            "suppressed": stats.suppressed,
            "top_links": [{"url": x.url, "clicks": x.clicks} for x in stats.top_links],
            "best_send_hour": stats.best_send_hour, "trend": stats.trend.to_dict(),
            "started_at": stats.started_at, "computed_at": stats.computed_at,
        }
        stmt = self._insert(CampaignStatsRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "campaign_id"],
            set_={k: stmt.excluded[k] for k in values if k not in ("tenant_id", "campaign_id")},
        )
        async with self._write() as conn:
            await conn.execute(stmt)
        return stats

    async def get_campaign_stats(self, tenant_id: str, campaign_id: str
                                 ) -> CampaignStats | None:
        async with self._read() as conn:
            row = (await conn.execute(select(CampaignStatsRow.__table__).where(
                CampaignStatsRow.tenant_id == tenant_id,
                CampaignStatsRow.campaign_id == campaign_id,
            ))).first()
        return None if row is None else campaign_stats(row)

    # --- daily tenant stats ------------------------------------------------------------
    async def campaigns_active_on(self, tenant_id: str, day: date) -> list[str]:
        """Campaigns of the tenant with any delivery or event on ``day`` (UTC), sorted."""
        start, end = _day_range(day)
        async with self._read() as conn:
            return await aggregate.active_campaigns(conn, tenant_id, start, end)

    async def daily_counts(self, tenant_id: str, day: date, campaign_ids: Sequence[str]
                           ) -> DailyTenantStats:
        """Counts of some of the tenant's campaigns on ``day`` (one chunk of a rollup)."""
        start, end = _day_range(day)
        async with self._read() as conn:
            return await aggregate.daily_counts(conn, tenant_id, day, start, end,
                                                list(campaign_ids))

    async def save_daily_stats(self, stats: DailyTenantStats) -> DailyTenantStats:
        """Insert or replace the tenant's row for ``stats.day``; returns what was stored."""
        now = utcnow()
        values = {**stats.to_dict(), "day": stats.day, "computed_at": now}
        stmt = self._insert(DailyTenantStatsRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "day"],
            set_={k: stmt.excluded[k] for k in values if k not in ("tenant_id", "day")},
        )
        async with self._write() as conn:
            await conn.execute(stmt)
        return DailyTenantStats(**{**values, "computed_at": now})

    async def get_daily_stats(self, tenant_id: str, day: date) -> DailyTenantStats | None:
        async with self._read() as conn:
            row = (await conn.execute(select(DailyTenantStatsRow.__table__).where(
                DailyTenantStatsRow.tenant_id == tenant_id, DailyTenantStatsRow.day == day,
            ))).first()
        if row is None:
            return None
        values = row._asdict()
        values.pop("id")
        return DailyTenantStats(**values)

    # --- dead letters ------------------------------------------------------------------
    async def add_dead_letter(self, letter: DeadLetterRecord) -> int:
        """Keep a job that failed for good; returns the dead letter's id."""
        stmt = insert(DeadLetter).values(
            queue=letter.queue, job_id=letter.job_id, job_name=letter.job_name,
            data=letter.data, error=letter.error, stacktrace=list(letter.stacktrace),
            attempts=letter.attempts, failed_at=letter.failed_at or utcnow(),
            replayed_at=letter.replayed_at, replay_job_id=letter.replay_job_id,
        ).returning(DeadLetter.id)
        async with self._write() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def list_dead_letters(
        self, limit: int = 50, queue: str | None = None, include_replayed: bool = False
    ) -> list[DeadLetterRecord]:
        """Newest first."""
        query = select(DeadLetter.__table__)
        if queue is not None:
            query = query.where(DeadLetter.queue == queue)
        if not include_replayed:
            query = query.where(DeadLetter.replayed_at.is_(None))
        query = query.order_by(DeadLetter.failed_at.desc(), DeadLetter.id.desc()).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [dead_letter_record(r) for r in rows]

    async def get_dead_letter(self, id: int) -> DeadLetterRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(
                select(DeadLetter.__table__).where(DeadLetter.id == id))).first()
        return None if row is None else dead_letter_record(row)

    async def mark_dead_letter_replayed(self, id: int, new_job_id: str) -> bool:
        """Record that dead letter ``id`` was re-enqueued as ``new_job_id``.

        Returns ``False`` when there is no such dead letter or it was already replayed,
        so two operators replaying the same letter find out that one of them was second.
        """
        stmt = (update(DeadLetter).where(DeadLetter.id == id, DeadLetter.replayed_at.is_(None))
                .values(replayed_at=utcnow(), replay_job_id=new_job_id))
        async with self._write() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount)

    # --- AI results --------------------------------------------------------------------
    async def save_ai_result(self, result: AIResultRecord) -> int:
        """Store an AI job's result (replacing an earlier one of the same job); returns id."""
        values = {
            "job_id": result.job_id, "tenant_id": result.tenant_id, "type": result.type,
            "input": result.input, "output": result.output, "provider": result.provider,
            "model": result.model, "created_at": result.created_at or utcnow(),
        }
        stmt = self._insert(AIResult).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["job_id"],
            set_={k: stmt.excluded[k] for k in values if k != "job_id"},
        ).returning(AIResult.id)
        async with self._write() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def get_ai_result(self, job_id: str) -> AIResultRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(
                select(AIResult.__table__).where(AIResult.job_id == job_id))).first()
        return None if row is None else AIResultRecord(**row._asdict())


def _day_range(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day)
    return start, start + timedelta(days=1)

