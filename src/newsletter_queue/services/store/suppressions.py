"""The store's suppression list and erasure. Mixed into ``Store`` (``Store(…,
SuppressionList)``).

A tenant's suppression list holds every address its campaigns must never mail again:
unsubscribed, hard-bounced, complained, or added by hand. Entries are keyed by
``records.address_hash`` (so a lookup never compares raw text case by case, and an erased
address stays suppressed by its hash alone). The email processor asks ``suppressed`` once
per batch job of recipients — one indexed ``IN`` query on (tenant, hash).

An address is suppressed once: adding it again keeps the first entry (its reason and
campaign say why it was suppressed first).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import Delivery, Event, Suppression
from .records import (
    SUPPRESSION_REASONS,
    ErasureResult,
    SuppressionReason,
    SuppressionRecord,
    address_hash,
    utcnow,
)

_IN_GROUP = 500  # hashes per IN (...) query: well under SQLite's variable limit


class SuppressionList:
    """Suppression queries and writes (the ``Store`` provides ``_read``, ``_write`` and
    ``_insert``)."""

    def _read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    def _insert(self, model: Any) -> Any:
        raise NotImplementedError

    async def suppress(self, tenant_id: str, emails: Iterable[str],
                       reason: SuppressionReason, *, campaign_id: str | None = None) -> int:
        """Add addresses to the tenant's list; returns how many were not on it yet.

        Raises:
            ValueError: an unknown ``reason``.
        """
        if reason not in SUPPRESSION_REASONS:
            raise ValueError(f"reason: {reason!r} is not one of "
                             f"{', '.join(sorted(SUPPRESSION_REASONS))}")
        by_hash: dict[str, str] = {}
        for email in emails:
            if email.strip():
                by_hash.setdefault(address_hash(email), email.strip())  # the first wins
        if not by_hash:
            return 0
        added = 0
        now = utcnow()
        hashes = list(by_hash)
        async with self._write() as conn:
            for start in range(0, len(hashes), _IN_GROUP):
                group = hashes[start:start + _IN_GROUP]
                known = set((await conn.execute(select(Suppression.email_hash).where(
                    Suppression.tenant_id == tenant_id,
                    Suppression.email_hash.in_(group)))).scalars())
                rows = [{"tenant_id": tenant_id, "email_hash": h, "email": by_hash[h],
                         "reason": reason, "campaign_id": campaign_id, "created_at": now}
                        for h in group if h not in known]
                if rows:
                    await conn.execute(self._insert(Suppression).on_conflict_do_nothing(
                        index_elements=["tenant_id", "email_hash"]), rows)
                    added += len(rows)
        return added

    async def unsuppress(self, tenant_id: str, email: str) -> bool:
        """Remove an address from the list (also an erased one); whether it was on it."""
        async with self._write() as conn:
            result = await conn.execute(delete(Suppression).where(
                Suppression.tenant_id == tenant_id,
                Suppression.email_hash == address_hash(email)))
        return bool(result.rowcount)

    async def suppressed(self, tenant_id: str, emails: Sequence[str]) -> set[str]:
        """Which of ``emails`` (as given) are on the tenant's list."""
        if not emails:
            return set()
        by_hash: dict[str, list[str]] = {}
        for email in emails:
            by_hash.setdefault(address_hash(email), []).append(email)
        found: set[str] = set()
        hashes = list(by_hash)
        async with self._read() as conn:
            for start in range(0, len(hashes), _IN_GROUP):
                group = hashes[start:start + _IN_GROUP]
                for h in (await conn.execute(select(Suppression.email_hash).where(
                        Suppression.tenant_id == tenant_id,
                        Suppression.email_hash.in_(group)))).scalars():
                    found.update(by_hash[h])
        return found

    async def get_suppression(self, tenant_id: str, email: str) -> SuppressionRecord | None:
        async with self._read() as conn:
            row = (await conn.execute(select(Suppression.__table__).where(
                Suppression.tenant_id == tenant_id,
                Suppression.email_hash == address_hash(email)))).first()
        return None if row is None else _suppression(row)

    async def list_suppressions(self, tenant_id: str, *, reason: str | None = None,
                                campaign_id: str | None = None, limit: int = 50,
                                offset: int = 0) -> list[SuppressionRecord]:
        """The tenant's entries, newest first (optionally of one reason or campaign)."""
        query = (select(Suppression.__table__)
                 .where(*self._suppression_filter(tenant_id, reason, campaign_id))
                 .order_by(Suppression.created_at.desc(), Suppression.id.desc())
                 .offset(offset).limit(limit))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [_suppression(r) for r in rows]

    async def count_suppressions(self, tenant_id: str, *, reason: str | None = None,
                                 campaign_id: str | None = None) -> int:
        query = select(func.count()).select_from(Suppression).where(
            *self._suppression_filter(tenant_id, reason, campaign_id))
        async with self._read() as conn:
            return int(await conn.scalar(query) or 0)

    async def suppression_counts(self, tenant_id: str, campaign_id: str) -> dict[str, int]:
        """Entries that came from one campaign, by reason (its unsubscribes, bounces and
        complaints)."""
        query = (select(Suppression.reason, func.count()).where(
            Suppression.tenant_id == tenant_id, Suppression.campaign_id == campaign_id)
            .group_by(Suppression.reason))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return {str(reason): int(count) for reason, count in rows}

    async def erase_address(self, tenant_id: str, email: str) -> ErasureResult:
        """Forget an address for a tenant: delete its deliveries and events, and keep
        only a hashed suppression entry (created as *manual* if it had none), so it is
        still never mailed. One transaction."""
        digest = address_hash(email)
        async with self._write() as conn:
            deliveries = await _delete_rows_of(conn, Delivery, Delivery.email, tenant_id,
                                               email)
            events = await _delete_rows_of(conn, Event, Event.recipient, tenant_id, email)
            kept = await conn.execute(update(Suppression).where(
                Suppression.tenant_id == tenant_id, Suppression.email_hash == digest)
                .values(email=None))
            created = not kept.rowcount
            if created:
                await conn.execute(self._insert(Suppression).values(
                    tenant_id=tenant_id, email_hash=digest, email=None, reason="manual",
                    campaign_id=None, created_at=utcnow()).on_conflict_do_nothing(
                    index_elements=["tenant_id", "email_hash"]))
        return ErasureResult(deliveries=deliveries, events=events,
                             suppression_created=created)

    @staticmethod
    def _suppression_filter(tenant_id: str, reason: str | None,
                            campaign_id: str | None) -> list[Any]:
        where: list[Any] = [Suppression.tenant_id == tenant_id]
        if reason is not None:
            where.append(Suppression.reason == reason)
        if campaign_id is not None:
            where.append(Suppression.campaign_id == campaign_id)
        return where


async def _delete_rows_of(conn: AsyncConnection, model: Any, column: Any, tenant_id: str,
                          email: str) -> int:
    """Delete the tenant's rows whose address is ``email`` as Python compares addresses
    (``str.lower``, as the sends and the suppression hash do). SQL ``lower()`` folds only
    ASCII on SQLite (and on PostgreSQL in the C locale), so the candidates are found with
    ``LIKE`` — every non-ASCII character a one-character wildcard — and compared here."""
    wanted = email.strip().lower()
    pattern = "".join(
        "\\" + c if c in "\\%_" else (c if c.isascii() else "_") for c in wanted)
    rows = (await conn.execute(select(model.id, column).where(
        model.tenant_id == tenant_id,
        func.lower(column).like(pattern, escape="\\")))).all()
    ids = [row[0] for row in rows if str(row[1]).strip().lower() == wanted]
    for start in range(0, len(ids), _IN_GROUP):
        await conn.execute(delete(model).where(model.id.in_(ids[start:start + _IN_GROUP])))
    return len(ids)


def _suppression(r: Row[Any]) -> SuppressionRecord:
    return SuppressionRecord(tenant_id=r.tenant_id, email=r.email, email_hash=r.email_hash,
                             reason=r.reason, campaign_id=r.campaign_id,
                             created_at=r.created_at)
