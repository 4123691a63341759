"""DKIM test material made in the test run: RSA keys, their DNS TXT records, and a DNS
lookup for ``dkim.verify(dnsfunc=...)`` that serves only the records a test publishes."""

from __future__ import annotations

import functools
from base64 import b64encode
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


@functools.cache
def rsa_key(name: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA key per ``name`` (made once per test session)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pem(key: rsa.RSAPrivateKey, *, pkcs8: bool = False) -> str:
    """The key's PEM text: PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8."""
    fmt = (serialization.PrivateFormat.PKCS8 if pkcs8
           else serialization.PrivateFormat.TraditionalOpenSSL)
    return key.private_bytes(serialization.Encoding.PEM, fmt,
                             serialization.NoEncryption()).decode()


def txt_record(key: rsa.RSAPrivateKey) -> bytes:
    """``v=DKIM1; k=rsa; p=…``: the public key as a DKIM TXT record publishes it."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; p=" + b64encode(der)


@dataclass
class FakeDns:
    """``selector._domainkey.domain`` → TXT record; remembers every name asked."""

    records: dict[str, bytes] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def publish(self, selector: str, domain: str, key: rsa.RSAPrivateKey) -> None:
        self.records[f"{selector}._domainkey.{domain}"] = txt_record(key)

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        text = name.decode().rstrip(".")
        self.asked.append(text)
        return self.records.get(text)
