"""DKIM signatures (RFC 6376) on outgoing mail: rsa-sha256, relaxed/relaxed.

Which key signs a message: its tenant's own (``NLQ_DKIM_TENANTS``) if it has one, else
the global key (``NLQ_DKIM_DOMAIN``, ``NLQ_DKIM_SELECTOR``, ``NLQ_DKIM_PRIVATE_KEY`` or
``NLQ_DKIM_PRIVATE_KEY_FILE``); neither → the message goes out unsigned. The header
fields signed are ``NLQ_DKIM_HEADERS`` (``config.DKIM_DEFAULT_HEADERS``).

``DkimSigner.from_settings`` runs once per worker process (the email processor calls it)
and reads and parses every key then: a key that cannot be used is a ``DkimKeyError`` at
start-up, naming the setting or file, never showing the key. Signing a message then
only canonicalises, hashes and signs.

dkimpy (the reference implementation) parses the message, canonicalises it and hashes
the header fields exactly as its ``dkim.sign`` does; only the RSA operation is not its
own but OpenSSL's (``cryptography``): dkimpy computes it in pure Python, about 7 ms per
message with a 2048-bit key against 0.5 ms of CPU for the whole signature here
(``bench/dkim_sign.py``), and ``dkim.sign`` would parse the PEM key again for every
message. The helpers used (``rfc822_parse``, ``fold``, ``RE_BTAG``, ``hash_headers``) are
module-level functions of dkimpy 1.1 outside its ``__all__``, hence the ``<1.2`` range
in pyproject.toml; what comes out is byte for byte what ``dkim.sign`` writes
(``tests/unit/test_dkim.py`` compares them), and ``dkim.verify`` verifies it.
"""

from __future__ import annotations

import time
from base64 import b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy

from ..config import DkimKey, Settings
from ..errors import ConfigurationError
from .render import RenderError

MIN_KEY_BITS = 1024  # RFC 8301: verifiers ignore shorter keys; 2048 is what to use
_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_HEADER = b"DKIM-Signature"


class DkimKeyError(ConfigurationError):
    """A configured DKIM private key cannot be used (unreadable, not an RSA key, too
    short). The message names the setting or the file, never the key."""


@dataclass(frozen=True)
class SigningIdentity:
    """A parsed key with its ``d=`` domain and ``s=`` selector."""

    domain: str
    selector: str
    key: rsa.RSAPrivateKey = field(repr=False)

    def dns_record(self) -> tuple[str, str]:
        """The TXT record that publishes the public key: (name, value)."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return (f"{self.selector}._domainkey.{self.domain}",
                f"v=DKIM1; k=rsa; p={b64encode(der).decode()}")

    def zone_entry(self) -> str:
        """The record as a zone-file line; its text is split into strings of at most
        250 characters (one DNS string holds 255, a 2048-bit key's record is ~400)."""
        name, value = self.dns_record()
        strings = " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250))
        return f"{name}. IN TXT ( {strings} )"


def load_identity(setting: DkimKey, where: str) -> SigningIdentity:
    """Read and parse ``setting``'s key; ``where`` names it in errors.

    Raises:
        DkimKeyError: unreadable file, not a PEM RSA private key, encrypted, too short.
    """
    if setting.private_key_file is not None:
        where = f"{where} (file {setting.private_key_file})"
        try:
            pem = setting.private_key_file.read_bytes()
        except OSError as exc:
            raise DkimKeyError(f"DKIM key of {where} cannot be read: "
                               f"{exc.strerror or type(exc).__name__}") from None
    else:
        assert setting.private_key is not None  # DkimKey requires one of the two
        pem = setting.private_key.get_secret_value().strip().encode()
        if b"\n" not in pem:  # a one-line variable with the newlines written as \n
            pem = pem.replace(b"\\n", b"\n")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise DkimKeyError(f"DKIM key of {where} is encrypted; give it without a "
                           "passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise DkimKeyError(f"DKIM key of {where} is not a PEM private key (PKCS#1 "
                           "'BEGIN RSA PRIVATE KEY' or PKCS#8 'BEGIN PRIVATE KEY')") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError(f"DKIM key of {where} is not an RSA key; only rsa-sha256 "
                           "signatures are made")
    if key.key_size < MIN_KEY_BITS:
        raise DkimKeyError(f"DKIM key of {where} has {key.key_size} bits; receivers "
                           f"ignore keys under {MIN_KEY_BITS} (use 2048)")
    return SigningIdentity(setting.domain, setting.selector, key)


class DkimSigner:
    """Signs each message with its tenant's key, or the global one, or leaves it be.

    Args:
        default: the global identity (tenants without their own), or None.
        tenants: tenant id → its own identity.
        headers: the header field names to sign (``h=``).
    """

    def __init__(self, default: SigningIdentity | None,
                 tenants: Mapping[str, SigningIdentity], headers: Sequence[str]) -> None:
        self.default = default
        self.tenants = dict(tenants)
        self.headers = tuple(h.lower().encode("ascii") for h in headers)
        self._h_tag = b" : ".join(self.headers)

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The signer of ``settings``' keys, all parsed now; None if there is no key.

        Raises:
            DkimKeyError: a key cannot be used.
        """
        key = settings.dkim_key
        where = "NLQ_DKIM_PRIVATE_KEY" + ("_FILE" if settings.dkim_private_key_file else "")
        default = load_identity(key, where) if key is not None else None
        tenants = {tenant: load_identity(own, f"tenant {tenant!r} (NLQ_DKIM_TENANTS)")
                   for tenant, own in settings.dkim_tenants.items()}
        if default is None and not tenants:
            return None
        return cls(default, tenants, settings.dkim_headers)

    def identity_for(self, tenant_id: str) -> SigningIdentity | None:
        return self.tenants.get(tenant_id, self.default)

    def sign(self, tenant_id: str, message: bytes) -> bytes:
        """``message`` with a DKIM-Signature header field first (unchanged if neither the
        tenant nor the platform has a key).

        Raises:
            RenderError: the message is not parseable as RFC 5322 (never for ours).
        """
        identity = self.identity_for(tenant_id)
        return message if identity is None else self.signature(identity, message) + message

    def signature(self, identity: SigningIdentity, message: bytes, *,
                  now: int | None = None) -> bytes:
        """The DKIM-Signature header field of ``message``, ending in CRLF."""
        try:
            headers, body = dkim.rfc822_parse(message)
        except dkim.MessageFormatError as exc:
            raise RenderError(f"DKIM: the message cannot be parsed: {exc}") from None
        domain = identity.domain.encode()
        fields = [
            (b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"),
            (b"d", domain), (b"i", b"@" + domain), (b"q", b"dns/txt"),
            (b"s", identity.selector.encode()),
            (b"t", str(int(time.time()) if now is None else now).encode()),
            (b"h", self._h_tag),
            (b"bh", b64encode(sha256(_POLICY.canonicalize_body(body)).digest())),
            # As dkim.sign: a placeholder folds b= onto lines of its own, so that writing
            # the signature in does not refold the tags before it.
            (b"b", b"0" * 60),
        ]
        unsigned = dkim.RE_BTAG.sub(b"\\1", dkim.fold(_joined(fields), namelen=len(_HEADER)))
        digest = sha256()
        dkim.hash_headers(digest, _POLICY, _POLICY.canonicalize_headers(headers),
                          self.headers, (_HEADER, b" " + unsigned), None)
        signed = identity.key.sign(digest.digest(), padding.PKCS1v15(),
                                   utils.Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", b64encode(signed))
        folded: bytes = dkim.fold(_joined(fields) + b"\r\n", namelen=len(_HEADER))
        return _HEADER + b": " + folded


def _joined(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"; ".join(b"=".join(pair) for pair in fields)
