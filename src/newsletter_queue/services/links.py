"""The signed links a message carries, built and checked in one place.

``Links`` makes the links of a recipient and checks one that comes back. Each names
tenant, campaign and address in its query, and ``sig`` is their HMAC
(``signing.Signer``), with a purpose of its own per kind of link — a link edited to
another address, campaign or tenant, or made up, fails the check, and a signature made
for one kind is worthless for another:

- the one-click unsubscribe (``List-Unsubscribe`` and ``{{ unsubscribe_url }}``), purpose
  ``"unsubscribe"``::

    https://news.example.com/unsubscribe?tenant=t1&campaign=june&email=ann%40example.com&sig=…

- the open pixel of a campaign that tracks opens, purpose ``"open"``::

    https://news.example.com/t/o?tenant=t1&campaign=june&email=ann%40example.com&sig=…

- a tracked click, purpose ``"click"``: the signature covers the target URL as well, so
  the redirect sends nobody anywhere the campaign did not link to (no open redirect)::

    https://news.example.com/t/c?tenant=t1&campaign=june&email=…&url=https%3A%2F%2F…&sig=…

The API serves them (``api.public``, ``api.tracking``). ``NLQ_UNSUBSCRIBE_BASE_URL`` is
where the internet reaches ``/unsubscribe`` (the platform's own domain in front of the
API); ``NLQ_TRACKING_BASE_URL`` where it reaches ``/t/…`` — by default the unsubscribe
URL less its last path segment, i.e. the same API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import Settings
from .signing import Signer

UNSUBSCRIBE = "unsubscribe"
OPEN = "open"
CLICK = "click"
OPEN_PATH = "/t/o"
CLICK_PATH = "/t/c"
MAX_TRACKED_URL = 2048
"""Longest target URL a click link is made for (a longer link is left as it is)."""
_WEB_URL = re.compile(r"https?://[^\s]", re.IGNORECASE)
# ``quote(value, safe="")`` as one ``str.translate`` of the UTF-8 bytes: a click link is
# made for every link of every message, and ``quote`` works a character at a time.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_PERCENT = {byte: chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in range(256)}


@dataclass(frozen=True)
class LinkTarget:
    """Whom a verified link is about."""

    tenant_id: str
    campaign_id: str
    email: str


@dataclass(frozen=True)
class ClickTarget(LinkTarget):
    """A verified click link: whom it is about and where it goes."""

    url: str


def _quote(value: str) -> str:
    return value.encode("utf-8", "surrogatepass").decode("latin-1").translate(_PERCENT)


def is_web_url(url: str) -> bool:
    """Whether ``url`` is an absolute ``http``/``https`` URL (what a click may lead to)."""
    return _WEB_URL.match(url) is not None


class RecipientLinks:
    """The tracking links of one recipient of one campaign (the query's common part is
    built once per message, not once per link)."""

    def __init__(self, links: Links, tenant_id: str, campaign_id: str, email: str) -> None:
        self._signer = links.signer
        self._parts = (tenant_id, campaign_id, email.lower())
        self._query = (f"tenant={_quote(tenant_id)}&campaign={_quote(campaign_id)}"
                       f"&email={_quote(email)}")
        self._click_base = f"{links.tracking_base_url}{CLICK_PATH}?{self._query}"
        self.open_url = (f"{links.tracking_base_url}{OPEN_PATH}?{self._query}"
                         f"&sig={self._signer.sign(OPEN, *self._parts)}")

    def click_url(self, url: str) -> str:
        """The signed redirect to ``url``."""
        sig = self._signer.sign(CLICK, *self._parts, url)
        return f"{self._click_base}&url={_quote(url)}&sig={sig}"


class Links:
    """Builds and verifies a campaign's signed links (see the module docstring)."""

    def __init__(self, signer: Signer, *, unsubscribe_base_url: str,
                 tracking_base_url: str | None = None) -> None:
        self.signer = signer
        self.unsubscribe_base_url = unsubscribe_base_url
        self.tracking_base_url = (tracking_base_url or
                                  unsubscribe_base_url.rsplit("/", 1)[0]).rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings, signer: Signer | None = None) -> Links:
        return cls(signer or Signer.from_settings(settings),
                   unsubscribe_base_url=settings.unsubscribe_base_url,
                   tracking_base_url=settings.tracking_base_url)

    def unsubscribe_url(self, tenant_id: str, campaign_id: str, email: str) -> str:
        sig = self.signer.sign(UNSUBSCRIBE, tenant_id, campaign_id, email.lower())
        return (f"{self.unsubscribe_base_url}?tenant={_quote(tenant_id)}"
                f"&campaign={_quote(campaign_id)}&email={_quote(email)}&sig={sig}")

    def is_unsubscribe_url(self, url: str) -> bool:
        """Whether ``url`` is one of our unsubscribe links (never tracked)."""
        return url.startswith(f"{self.unsubscribe_base_url}?")

    def is_tracking_url(self, url: str) -> bool:
        """Whether ``url`` is one of our pixel or click links already."""
        return url.startswith((f"{self.tracking_base_url}{OPEN_PATH}?",
                               f"{self.tracking_base_url}{CLICK_PATH}?"))

    def for_recipient(self, tenant_id: str, campaign_id: str, email: str
                      ) -> RecipientLinks:
        """The open and click links of one recipient."""
        return RecipientLinks(self, tenant_id, campaign_id, email)

    def check_unsubscribe(self, tenant_id: str | None, campaign_id: str | None,
                          email: str | None, sig: str | None) -> LinkTarget | None:
        """The link's target if its signature is right, else ``None``."""
        return self._check(UNSUBSCRIBE, tenant_id, campaign_id, email, sig)

    def check_open(self, tenant_id: str | None, campaign_id: str | None,
                   email: str | None, sig: str | None) -> LinkTarget | None:
        """The pixel's recipient if its signature is right, else ``None``."""
        return self._check(OPEN, tenant_id, campaign_id, email, sig)

    def check_click(self, tenant_id: str | None, campaign_id: str | None,
                    email: str | None, url: str | None, sig: str | None
                    ) -> ClickTarget | None:
        """The click's recipient and target if the signature covers exactly this target
        (and it is an ``http``/``https`` URL), else ``None``."""
        if not (url and is_web_url(url) and len(url) <= MAX_TRACKED_URL):
            return None
        target = self._check(CLICK, tenant_id, campaign_id, email, sig, url)
        return None if target is None else ClickTarget(
            target.tenant_id, target.campaign_id, target.email, url)

    def _check(self, purpose: str, tenant_id: str | None, campaign_id: str | None,
               email: str | None, sig: str | None, *extra: str) -> LinkTarget | None:
        if not (tenant_id and campaign_id and email and sig):
            return None
        if not self.signer.verify(sig, purpose, tenant_id, campaign_id, email.lower(),
                                  *extra):
            return None
        return LinkTarget(tenant_id, campaign_id, email)
