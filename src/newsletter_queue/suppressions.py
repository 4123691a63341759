"""``Suppressions``: the addresses a tenant's campaigns never mail again.

Handed out by ``QueueManager.suppressions``; the list lives in the records store
(``services.store.suppressions``). The email processor consults it once per batch job of
a stored campaign's recipients and records a listed address's delivery as *suppressed*
(counted in the campaign's status and stats, never sent, never retried). Entries arrive
by themselves — a one-click unsubscribe, a hard bounce, a complaint — or are managed
here, from the HTTP API and from the CLI::

    await manager.suppressions.add("t1", ["ann@example.com"])            # reason manual
    page = await manager.suppressions.list("t1")
    await manager.suppressions.import_rows("t1", rows_from_csv("list.csv"))
    await manager.suppressions.erase("t1", "ann@example.com")            # forget her

Transactional mail (a job with inline content) is not suppressed: a password reset goes
to an address that unsubscribed from the newsletter.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .campaigns.recipients import RowError
from .campaigns.spool import spool_recipients
from .errors import FieldError, JobValidationError
from .jobs import Recipient, id_errors
from .services.store import (
    SUPPRESSION_REASONS,
    ErasureResult,
    Store,
    SuppressionReason,
    SuppressionRecord,
)

if TYPE_CHECKING:
    from .campaigns.recipients import Row
    from .manager import QueueManager

IMPORT_GROUP = 1000
"""Addresses per store write when importing a file."""


@dataclass(frozen=True)
class SuppressionPage:
    """A page of a tenant's suppression list, newest first."""

    items: list[SuppressionRecord]
    page: int
    page_size: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        return {"page": self.page, "page_size": self.page_size, "total": self.total,
                "suppressions": [s.to_dict() for s in self.items]}


@dataclass(frozen=True)
class ImportResult:
    """What ``import_rows`` did: addresses newly listed, already listed, rows that are
    not addresses (the first 100, with their row numbers; the others were imported)."""

    added: int
    already: int
    duplicates: int
    bad_rows: list[RowError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "already": self.already, "duplicates": self.duplicates,
                "bad_rows": [asdict(r) for r in self.bad_rows]}


class Suppressions:
    """A tenant's suppression list (see the module docstring).

    Args:
        manager: the ``QueueManager`` whose records store is used.
    """

    def __init__(self, manager: QueueManager) -> None:
        self.manager = manager

    async def add(self, tenant_id: str, emails: Iterable[str], *,
                  reason: SuppressionReason = "manual", campaign_id: str | None = None
                  ) -> int:
        """List addresses (each checked like a recipient's); returns how many were new.

        Raises:
            JobValidationError: a bad tenant id, reason or address (nothing is listed).
        """
        _check(tenant_id, reason)
        emails = builtins.list(emails)
        errors = [FieldError(f"emails[{i}]", "not an email address")
                  for i, email in enumerate(emails) if not _is_address(email)]
        if errors:
            raise JobValidationError("suppression", errors)
        return await (await self._store()).suppress(tenant_id, emails, reason,
                                                    campaign_id=campaign_id)

    async def import_rows(self, tenant_id: str, rows: Iterable[Row], *,
                          reason: SuppressionReason = "manual") -> ImportResult:
        """List every address of ``rows`` (``rows_from_csv``/``rows_from_ndjson`` of a
        file with an ``email`` column, read once, memory bounded). Bad rows are reported
        and skipped: listing the good ones is the safe side.

        Raises:
            JobValidationError: a bad tenant id or reason.
            RecipientsError: the file cannot be read at all.
        """
        _check(tenant_id, reason)
        spooled = await asyncio.to_thread(lambda: spool_recipients(rows))
        store = await self._store()
        added = listed = 0
        with spooled:
            for group in spooled.batches(IMPORT_GROUP):
                emails = [wire["email"] for wire in group]
                listed += len(emails)
                added += await store.suppress(tenant_id, emails, reason)
            check = spooled.check
        return ImportResult(added=added, already=listed - added,
                            duplicates=check.duplicates, bad_rows=builtins.list(check.errors))

    async def remove(self, tenant_id: str, email: str) -> bool:
        """Take an address off the list (its next campaign mails it); whether it was on."""
        _check(tenant_id)
        return await (await self._store()).unsuppress(tenant_id, email)

    async def get(self, tenant_id: str, email: str) -> SuppressionRecord | None:
        """The address's entry (why, from which campaign, since when), or ``None``."""
        _check(tenant_id)
        return await (await self._store()).get_suppression(tenant_id, email)

    async def list(self, tenant_id: str, *, reason: str | None = None,
                   campaign_id: str | None = None, page: int = 1, page_size: int = 50
                   ) -> SuppressionPage:
        """The tenant's entries, newest first; optionally of one reason or campaign."""
        _check(tenant_id, reason)
        if page < 1 or not 1 <= page_size <= 500:
            raise JobValidationError("suppression", [FieldError(
                "page" if page < 1 else "page_size", "page ≥ 1, page_size 1..500")])
        store = await self._store()
        items = await store.list_suppressions(tenant_id, reason=reason,
                                              campaign_id=campaign_id, limit=page_size,
                                              offset=(page - 1) * page_size)
        total = await store.count_suppressions(tenant_id, reason=reason,
                                               campaign_id=campaign_id)
        return SuppressionPage(items, page, page_size, total)

    async def erase(self, tenant_id: str, email: str) -> ErasureResult:
        """Forget an address: its deliveries and events are deleted and only a hashed
        suppression entry is kept, so it is still never mailed."""
        _check(tenant_id)
        if not _is_address(email):
            raise JobValidationError("erasure", [FieldError("email", "not an email address")])
        return await (await self._store()).erase_address(tenant_id, email)

    async def _store(self) -> Store:
        return await self.manager.store()


def _check(tenant_id: str, reason: str | None = None) -> None:
    errors = id_errors(tenantId=tenant_id)
    if reason is not None and reason not in SUPPRESSION_REASONS:
        errors.append(FieldError("reason", f"one of {', '.join(sorted(SUPPRESSION_REASONS))}"))
    if errors:
        raise JobValidationError("suppression", errors)


def _is_address(email: Any) -> bool:
    if not isinstance(email, str):
        return False
    try:
        Recipient(email=email)
    except ValueError:
        return False
    return True
