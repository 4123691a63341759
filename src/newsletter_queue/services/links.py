"""The signed links a message carries, built and checked in one place.

``Links`` makes the one-click unsubscribe URL of a recipient (``List-Unsubscribe`` and
``{{ unsubscribe_url }}``) and checks one that comes back: the query names tenant,
campaign and address, and ``sig`` is their HMAC (``signing.Signer``, purpose
``"unsubscribe"``) — a link edited to another address, campaign or tenant, or made up,
fails the check.

    https://news.example.com/unsubscribe?tenant=t1&campaign=june&email=ann%40example.com&sig=…

The API serves ``/unsubscribe`` (``api.public``); ``NLQ_UNSUBSCRIBE_BASE_URL`` is where the
internet reaches it (the platform's own domain in front of the API).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from ..config import Settings
from .signing import Signer

UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class LinkTarget:
    """Whom a verified link is about."""

    tenant_id: str
    campaign_id: str
    email: str


class Links:
    """Builds and verifies a campaign's signed links (see the module docstring)."""

    def __init__(self, signer: Signer, *, unsubscribe_base_url: str) -> None:
        self.signer = signer
        self.unsubscribe_base_url = unsubscribe_base_url

    @classmethod
    def from_settings(cls, settings: Settings, signer: Signer | None = None) -> Links:
        return cls(signer or Signer.from_settings(settings),
                   unsubscribe_base_url=settings.unsubscribe_base_url)

    def unsubscribe_url(self, tenant_id: str, campaign_id: str, email: str) -> str:
        sig = self.signer.sign(UNSUBSCRIBE, tenant_id, campaign_id, email.lower())
        query = urlencode({"tenant": tenant_id, "campaign": campaign_id, "email": email,
                           "sig": sig})
        return f"{self.unsubscribe_base_url}?{query}"

    def check_unsubscribe(self, tenant_id: str | None, campaign_id: str | None,
                          email: str | None, sig: str | None) -> LinkTarget | None:
        """The link's target if its signature is right, else ``None``."""
        if not (tenant_id and campaign_id and email and sig):
            return None
        if not self.signer.verify(sig, UNSUBSCRIBE, tenant_id, campaign_id, email.lower()):
            return None
        return LinkTarget(tenant_id, campaign_id, email)
