"""The DKIM signer on its own: it writes what dkimpy's ``dkim.sign`` writes, keys are
checked once at start-up (clear errors, never the key), and the DKIM settings refuse
what would break signing or one-click unsubscribe."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from newsletter_queue.config import DKIM_DEFAULT_HEADERS, DkimKey
from newsletter_queue.errors import ConfigurationError
from newsletter_queue.jobs import Recipient
from newsletter_queue.services.dkim import DkimKeyError, DkimSigner, load_identity
from newsletter_queue.services.render import CompiledCampaign, Content
from tests.conftest import make_settings
from tests.support.dkimkeys import FakeDns, pem, rsa_key, txt_record
from tests.support.helpers import TEST_LINKS

HEADERS = [h.lower() for h in DKIM_DEFAULT_HEADERS]


def rendered(name: str = "Renée Müller") -> bytes:
    campaign = CompiledCampaign(
        "t1", "c1", Content(subject="Grüße, {{ name }} — café ☕", html="<p>Hallo {{ name }}</p>",
                            from_addr="Zoë Café <news@example.com>",
                            reply_to="Antwort <reply@example.com>"),
        default_from="x@example.com", links=TEST_LINKS)
    return campaign.render(Recipient(email="renee@example.org", name=name))[1]


def signer_for(key: rsa.RSAPrivateKey, **overrides: object) -> DkimSigner:
    values: dict[str, object] = {"dkim_domain": "example.com", "dkim_selector": "nl2025",
                                 "dkim_private_key": pem(key), **overrides}
    settings = make_settings(**values)
    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    return signer


# Whitespace that relaxed canonicalisation folds: in headers, at line ends, blank lines
# at the end of the body.
UNTIDY = (b"From:  Ann <ann@example.com> \r\nSubject: so\t  spaced\r\n  folded \r\n"
          b"To: b@example.org\r\n\r\nline  with\t trailing  \r\n\r\n\r\n")


@pytest.mark.parametrize(("pkcs8", "untidy"), [(False, False), (True, False), (False, True)],
                         ids=["pkcs1", "pkcs8", "untidy-whitespace"])
def test_the_signature_is_byte_for_byte_what_dkim_sign_writes(
        monkeypatch: pytest.MonkeyPatch, pkcs8: bool, untidy: bool) -> None:
    key = rsa_key("global")
    signer = signer_for(key, dkim_private_key=pem(key, pkcs8=pkcs8))
    message = UNTIDY if untidy else rendered()
    now = int(time.time())
    monkeypatch.setattr(time, "time", lambda: float(now))  # dkim.sign's t=
    reference = dkim.sign(message, b"nl2025", b"example.com", pem(key).encode(),
                          canonicalize=(b"relaxed", b"relaxed"), include_headers=HEADERS)
    assert signer.default is not None
    ours = signer.signature(signer.default, message, now=now)
    assert ours == reference
    assert dkim.verify(ours + message, dnsfunc=FakeDns({
        "nl2025._domainkey.example.com": txt_record(key)}))


def test_the_published_record_is_the_public_key() -> None:
    key = rsa_key("global")
    signer = signer_for(key)
    assert signer.default is not None
    name, value = signer.default.dns_record()
    assert name == "nl2025._domainkey.example.com"
    assert value.encode() == txt_record(key)
    assert "PRIVATE" not in repr(signer.default)


def test_a_tenant_uses_its_own_key_and_others_the_global_one(tmp_path: Path) -> None:
    own = tmp_path / "acme.pem"
    own.write_text(pem(rsa_key("acme")))
    signer = signer_for(rsa_key("global"), dkim_tenants={
        "acme": {"domain": "Mail.Acme.Example", "selector": "s1", "private_key_file": own}})
    acme, other = signer.identity_for("acme"), signer.identity_for("t1")
    assert acme is not None
    assert other is not None
    assert (acme.domain, acme.selector) == ("mail.acme.example", "s1")
    assert (other.domain, other.selector) == ("example.com", "nl2025")


def test_tenant_keys_alone_leave_other_tenants_unsigned() -> None:
    signer = DkimSigner.from_settings(make_settings(dkim_tenants={
        "acme": {"domain": "acme.example", "selector": "s1",
                 "private_key": pem(rsa_key("acme"))}}))
    assert signer is not None
    message = rendered()
    assert signer.sign("t1", message) is message
    assert signer.sign("acme", message).startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")


def test_nothing_configured_means_no_signer() -> None:
    assert DkimSigner.from_settings(make_settings()) is None


def test_a_one_line_key_with_escaped_newlines_is_read() -> None:
    one_line = pem(rsa_key("global")).strip().replace("\n", "\\n")
    assert signer_for(rsa_key("global"), dkim_private_key=one_line).default is not None


def _small_rsa_key() -> rsa.RSAPrivateKey:
    """A 512-bit key (``cryptography`` will not generate one): two random primes."""
    rng = random.Random(7)

    def prime() -> int:
        while True:
            n = rng.getrandbits(256) | (1 << 255) | 1
            if all(pow(rng.randrange(2, n - 1), n - 1, n) == 1 for _ in range(20)):
                return n

    p, q = prime(), prime()
    e, phi = 65537, (p - 1) * (q - 1)
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                    rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _key_texts() -> dict[str, str]:
    encrypted = rsa_key("global").private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")).decode()
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    garbage = "-----BEGIN RSA PRIVATE KEY-----\nTOPSECRETbutnotakey\n-----END RSA PRIVATE KEY-----"
    return {"garbage": garbage, "encrypted": encrypted, "ec": ec_key,
            "short": pem(_small_rsa_key())}


@pytest.mark.parametrize(("case", "says"), [
    ("garbage", "is not a PEM private key"),
    ("encrypted", "is encrypted; give it without a passphrase"),
    ("ec", "is not an RSA key"),
    ("short", "has 512 bits; receivers ignore keys under 1024"),
])
def test_an_unusable_key_is_a_clear_error_that_never_shows_it(case: str, says: str) -> None:
    text = _key_texts()[case]
    with pytest.raises(DkimKeyError, match=says) as caught:
        signer_for(rsa_key("global"), dkim_private_key=text)
    message = str(caught.value)
    assert "NLQ_DKIM_PRIVATE_KEY" in message
    body = "".join(line for line in text.splitlines() if "-----" not in line)
    assert body[:16] not in message
    assert "TOPSECRET" not in message
    assert isinstance(caught.value, ConfigurationError)


def test_a_missing_key_file_names_the_file_and_the_tenant(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(DkimKeyError, match=r"tenant 'acme' \(NLQ_DKIM_TENANTS\) \(file "
                                           r".*nope\.pem\) cannot be read: No such file"):
        load_identity(DkimKey(domain="acme.example", selector="s1",
                              private_key_file=missing), "tenant 'acme' (NLQ_DKIM_TENANTS)")


@pytest.mark.parametrize(("overrides", "says"), [
    ({"dkim_domain": "example.com"}, "NLQ_DKIM_SELECTOR, NLQ_DKIM_PRIVATE_KEY or "
                                     "NLQ_DKIM_PRIVATE_KEY_FILE unset"),
    ({"dkim_domain": "example.com", "dkim_selector": "s", "dkim_private_key": "k",
      "dkim_private_key_file": "/k.pem"}, "not both"),
    ({"dkim_domain": "example.com; d=evil.example", "dkim_selector": "s",
      "dkim_private_key": "k"}, "must be a DNS name"),
    ({"dkim_headers": "From, To, Subject"}, "must include list-unsubscribe, "
                                            "list-unsubscribe-post"),
    ({"dkim_headers": "From, Received, List-Unsubscribe, List-Unsubscribe-Post"},
     "must not be signed: received"),
    ({"dkim_tenants": {"acme": {"domain": "acme.example", "selector": "s1"}}},
     "exactly one of private_key"),
])
def test_dkim_settings_refuse_what_cannot_sign(overrides: dict[str, object],
                                               says: str) -> None:
    from newsletter_queue.config import load_settings

    with pytest.raises(ConfigurationError, match=says):
        load_settings(_env_file=None, **overrides)


def test_dkim_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NLQ_DKIM_HEADERS", "From, To, List-Unsubscribe, List-Unsubscribe-Post")
    monkeypatch.setenv("NLQ_DKIM_TENANTS", '{"acme": {"domain": "acme.example", '
                       '"selector": "s1", "private_key_file": "/run/secrets/acme.pem"}}')
    monkeypatch.setenv("NLQ_DKIM_PRIVATE_KEY", "")  # blank is unset
    settings = make_settings()
    assert settings.dkim_headers == ("From", "To", "List-Unsubscribe",
                                     "List-Unsubscribe-Post")
    assert settings.dkim_tenants["acme"].private_key_file == Path("/run/secrets/acme.pem")
    assert settings.dkim_key is None
    monkeypatch.setenv("NLQ_DKIM_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nsecretbits")
    assert "secretbits" not in repr(make_settings(dkim_domain="a.example",
                                                  dkim_selector="s"))


def test_dkim_records_prints_what_to_publish(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from newsletter_queue.cli import app

    (tmp_path / "acme.pem").write_text(pem(rsa_key("acme")))
    env = {"NLQ_DKIM_DOMAIN": "example.com", "NLQ_DKIM_SELECTOR": "nl2025",
           "NLQ_DKIM_PRIVATE_KEY": pem(rsa_key("global")),
           "NLQ_DKIM_TENANTS": json.dumps({"acme": {
               "domain": "acme.example", "selector": "s1",
               "private_key_file": str(tmp_path / "acme.pem")}})}
    runner = CliRunner()
    listed = runner.invoke(app, ["dkim-records", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == [
        {"tenant": None, "name": "nl2025._domainkey.example.com",
         "value": txt_record(rsa_key("global")).decode()},
        {"tenant": "acme", "name": "s1._domainkey.acme.example",
         "value": txt_record(rsa_key("acme")).decode()}]
    zone = runner.invoke(app, ["dkim-records"], env=env)
    assert zone.exit_code == 0, zone.output
    assert "PRIVATE" not in zone.output
    entries = [line for line in zone.output.splitlines() if not line.startswith(";")]
    assert len(entries) == 2
    strings = re.findall(r'"([^"]*)"', entries[0])
    assert len(strings) > 1
    assert all(len(s) <= 255 for s in strings)
    assert entries[0].startswith("nl2025._domainkey.example.com. IN TXT ( ")
    assert "".join(strings).encode() == txt_record(rsa_key("global"))
    unset = runner.invoke(app, ["dkim-records"], env={})
    assert unset.exit_code == 1
    assert "no DKIM key is configured" in unset.output
