"""What the email processor deals in: the protocols of its collaborators (the SMTP
transport, the campaign source, the suppression list, the delivery recorder), one
recipient's outcome (``Delivery``), a batch's tally (``BatchResult``) and the error that
makes BullMQ retry the deferred recipients. Kept apart from ``processors.email`` so that
module holds the sending itself; ``processors.email`` re-exports every name here."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import DeliveryError
from ..services.render import Content


class MailTransport(Protocol):
    """Anything that sends one message to one recipient (``SmtpPool`` does)."""

    async def send(self, sender: str, recipient: str, message: bytes) -> str: ...


class CampaignSource(Protocol):
    """Where stored campaign content comes from (the records store)."""

    async def get_content(self, tenant_id: str, campaign_id: str) -> Content | None: ...


@dataclass(frozen=True)
class Delivery:
    """The outcome for one recipient of one attempt."""

    tenant_id: str
    campaign_id: str
    email: str
    status: str  # sent | bounced | failed | suppressed (| deferred, never recorded)
    attempt: int
    message_id: str | None = None
    smtp_code: int | None = None
    smtp_response: str | None = None


class SuppressionSource(Protocol):
    """The tenant's suppression list (the records store): which addresses not to mail."""

    async def suppressed(self, tenant_id: str, emails: Sequence[str]) -> set[str]: ...


class DeliveryRecorder(Protocol):
    async def record(self, deliveries: Sequence[Delivery], *,
                     only_missing: bool = False) -> None: ...


class TransientSendError(DeliveryError):
    """Some recipients could not be sent this time; the job is retried for them."""


@dataclass
class BatchResult:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped: int = 0
    deferred: int = 0
    reclaimed: int = 0
    busy: int = 0
    busy_ms: int = 0
    last_transient: str = ""
    errors: list[str] = field(default_factory=list)
    # The chunks' delivery rows handed to the row writer, not yet known to be written.
    row_writes: list[asyncio.Future[None]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "bounced": self.bounced, "failed": self.failed,
                "suppressed": self.suppressed, "skipped": self.skipped, "deferred": self.deferred,
                "reclaimed": self.reclaimed, "errors": self.errors[:20]}
