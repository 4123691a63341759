"""Signed links and addresses: what lets a public URL or a bounce say who it is about.

Every link the product puts into a message for the whole internet to call back — the
one-click unsubscribe, the open pixel, a tracked click — and the VERP Return-Path that a
bounce comes back to carry an HMAC-SHA256 over what they name (tenant, campaign,
recipient, and for a click the target URL), keyed by one secret. A request is acted on only
if its signature matches, so nobody can unsubscribe someone else, record opens for an
address, or turn the click redirect into an open redirect.

The secret is ``NLQ_SIGNING_SECRET`` when set (a blank one is refused: it would sign for
anyone). Unset, the first process that needs it generates 32 random bytes into
``<state_dir>/signing-secret`` (mode 0600, linked into place whole so that processes
starting together agree) and every later process on the machine reads it. Processes on several
machines must share the secret through the setting.

Written here rather than taken from a library: the standard library's ``hmac`` is the
whole primitive, and the token formats (short enough for an SMTP local part) are ours.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ..config import Settings
from ..errors import ConfigurationError

SECRET_FILE = "signing-secret"  # noqa: S105 — a file name, not a secret
SIGNATURE_BYTES = 16
"""Bytes of HMAC kept in a signature (128 bits; 22 characters of base64url)."""
_SEPARATOR = "\x1f"  # cannot occur in tenant or campaign ids, nor in an address


class Signer:
    """Signs and checks values for one purpose each (``"unsubscribe"``, ``"open"`` …), so
    a signature made for one use is worthless for another."""

    def __init__(self, secret: bytes) -> None:
        if len(secret.strip()) < 16:
            raise ConfigurationError("the signing secret is blank or shorter than 16 bytes")
        self._key = secret

    def sign(self, purpose: str, *parts: str) -> str:
        """The base64url signature (no padding) of ``parts`` for ``purpose``."""
        return _b64(self._mac(purpose, parts))

    def verify(self, signature: str, purpose: str, *parts: str) -> bool:
        """Whether ``signature`` is ``sign(purpose, *parts)``; constant time."""
        try:
            given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        except (ValueError, TypeError):
            return False
        return len(given) == SIGNATURE_BYTES and hmac.compare_digest(
            given, self._mac(purpose, parts))

    def _mac(self, purpose: str, parts: tuple[str, ...]) -> bytes:
        message = _SEPARATOR.join((purpose, *parts)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES]

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        """The signer of ``settings`` (see the module docstring for where its secret is)."""
        return cls(load_secret(settings))


def load_secret(settings: Settings) -> bytes:
    """``NLQ_SIGNING_SECRET``, else the state directory's secret file (made on first use).

    Raises:
        ConfigurationError: the setting or the file is blank (or too short).
    """
    if settings.signing_secret is not None:
        value = settings.signing_secret.get_secret_value().strip()
        if len(value) < 16:
            raise ConfigurationError(
                "NLQ_SIGNING_SECRET is blank or shorter than 16 characters; unset it to "
                "have one generated, or set a long random value")
        return value.encode("utf-8")
    path = Path(settings.state_dir) / SECRET_FILE
    if not path.exists():
        _create_secret_file(path)
    value = path.read_text(encoding="ascii").strip()
    if len(value) < 16:
        raise ConfigurationError(f"the signing secret in {path} is blank or too short; "
                                 "delete the file to have a new one generated")
    return value.encode("ascii")


def _create_secret_file(path: Path) -> None:
    """Write a new secret to a private temporary file, then link it into place: a
    process starting at the same moment sees no file or the whole one, and if two race,
    the first link wins and both read its secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):  # another process was first: its wins
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
