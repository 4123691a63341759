"""Bounce addresses (VERP): every message's envelope sender says whose message it is.

With ``NLQ_BOUNCE_DOMAIN`` set (``bounces.example.com``) each message goes out with
``MAIL FROM:<bounces+TOKEN@bounces.example.com>``. The receiving system keeps that as the
message's ``Return-Path``, and everything that comes back about the message — a bounce
(RFC 3464 DSN), a delay warning, a feedback-loop complaint (RFC 5965 ARF) — is sent to
it. The token names the delivery whatever the report itself says: a message forwarded
from ``ann@example.com`` that bounces at ``ann@elsewhere.example`` still comes back to
Ann's address. Without a bounce domain the envelope sender stays the campaign's sender.

The token is 32 characters, the lower-case base32 of 20 bytes::

    ref   = SHA-256("bounce-ref" ␟ tenant ␟ campaign ␟ address)[:10]   records.delivery_ref
    mac   = HMAC-SHA256(secret, "bounce" ␟ hex(ref))[:10]               Signer, purpose "bounce"
    token = base32(ref ‖ mac)

- The **reference** identifies the delivery. The store keeps it on every delivery row
  (``nlq_deliveries.bounce_ref``, indexed), so a bounce finds its tenant, campaign and
  address with one indexed lookup, without guessing. It is a plain hash (the store holds
  no secret) of what the message shows anyway (To, X-Tenant-ID, X-Campaign-ID).
- The **MAC** makes it unforgeable: without the signing secret nobody can make a token,
  edit one into another delivery's, or move one to another tenant. Checking it needs no
  database, so a forged address is refused before anything is looked up, and a genuine
  one whose delivery row is not written yet (a bounce faster than the batch's bookkeeping)
  can be tried again rather than taken for a forgery.
- Why not the ids themselves: tenant and campaign ids may have 128 characters each and an
  address 254, while a local part has at most 64 octets (RFC 5321 §4.5.3.1.1);
  ``bounces+`` and the token make 40. Ten bytes of reference collide about once in 10^12
  deliveries (an ambiguous reference names no delivery and records nothing); ten bytes of
  MAC leave a forger one chance in 2^80 per try.
- base32 in lower case survives MTAs that change the case of local parts; decoding folds it.

The domain is not part of what is checked: any ``bounces+<token>@…`` whose MAC verifies
is ours, so renaming the bounce domain does not lose the bounces still on their way to
the old one. What a token proves is that its holder saw that message — the recipient
could report their own address as bounced, which their unsubscribe link lets them do
anyway.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..config import Settings
from .signing import Signer
from .store.records import BOUNCE_REF_BYTES, delivery_ref

LOCAL_PREFIX = "bounces"
PURPOSE = "bounce"
MAC_BYTES = 10
TOKEN_CHARS = (BOUNCE_REF_BYTES + MAC_BYTES) * 8 // 5  # 32: 20 bytes, no padding
MAX_LOCAL_PART = 64
# bounces+<32 base32 characters>@<a domain>, in any case, anywhere in a header value.
_ADDRESS = re.compile(rf"(?<![\w.+-]){LOCAL_PREFIX}\+([a-z2-7]{{{TOKEN_CHARS}}})@"
                      r"[a-z0-9](?:[a-z0-9.-]{0,252})", re.IGNORECASE)


@dataclass(frozen=True)
class FoundTokens:
    """The bounce addresses found in some text: the references whose MAC verified (in
    the order found, once each) and how many addresses did not verify."""

    refs: list[str] = field(default_factory=list)
    forged: int = 0


class BounceAddresses:
    """Makes the bounce address of a delivery and checks those that come back.

    Args:
        signer: the signing secret's signer (shared with the links).
        domain: ``NLQ_BOUNCE_DOMAIN``; ``None`` means no VERP (``address`` returns ``None``).
    """

    def __init__(self, signer: Signer, domain: str | None) -> None:
        self.signer = signer
        self.domain = domain

    @classmethod
    def from_settings(cls, settings: Settings, signer: Signer | None = None
                      ) -> BounceAddresses:
        return cls(signer or Signer.from_settings(settings), settings.bounce_domain)

    def token(self, tenant_id: str, campaign_id: str, email: str) -> str:
        """The token of one delivery (see the module docstring)."""
        ref = delivery_ref(tenant_id, campaign_id, email)
        raw = bytes.fromhex(ref) + self.signer.mac(MAC_BYTES, PURPOSE, ref)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def address(self, tenant_id: str, campaign_id: str, email: str) -> str | None:
        """``bounces+<token>@<domain>``, or ``None`` without a bounce domain."""
        if self.domain is None:
            return None
        return f"{LOCAL_PREFIX}+{self.token(tenant_id, campaign_id, email)}@{self.domain}"

    def check(self, token: str) -> str | None:
        """The delivery reference (hex) of a token whose MAC verifies, else ``None``."""
        if len(token) != TOKEN_CHARS:
            return None
        try:
            raw = base64.b32decode(token + "=" * (-len(token) % 8), casefold=True)
        except (binascii.Error, ValueError):
            return None
        ref, mac = raw[:BOUNCE_REF_BYTES].hex(), raw[BOUNCE_REF_BYTES:]
        return ref if self.signer.verify_mac(mac, MAC_BYTES, PURPOSE, ref) else None

    def find(self, values: Iterable[str]) -> FoundTokens:
        """Every bounce address in ``values`` (header values, envelope addresses)."""
        found = FoundTokens()
        for value in values:
            for match in _ADDRESS.finditer(value):
                ref = self.check(match.group(1))
                if ref is None:
                    found = FoundTokens(found.refs, found.forged + 1)
                elif ref not in found.refs:
                    found.refs.append(ref)
        return found
