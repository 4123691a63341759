"""``services.verp``: a bounce address fits an SMTP local part whatever the ids, comes
back to the delivery it was made for, and any change to it — or a token made with
another secret, or spliced from two — fails the check. Also what the email path sends
as its envelope sender with and without a bounce domain."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter_queue.jobs import Recipient
from newsletter_queue.services.links import Links
from newsletter_queue.services.render import CompiledCampaign, Content
from newsletter_queue.services.signing import Signer
from newsletter_queue.services.store.records import delivery_ref
from newsletter_queue.services.verp import MAX_LOCAL_PART, TOKEN_CHARS, BounceAddresses

SIGNER = Signer(b"k" * 32)
VERP = BounceAddresses(SIGNER, "bounces.example.com")
LONG_ID = "t" * 128
LONGEST_ADDRESS = f"{'a' * 64}@{'d' * 63}.{'e' * 63}.{'f' * 59}.example"

ids = st.text(st.characters(codec="utf-8", exclude_characters="\x1f"), min_size=1,
              max_size=128)


def _local(address: str) -> str:
    return address.rpartition("@")[0]


def test_the_local_part_fits_rfc_5321_for_the_longest_ids() -> None:
    address = VERP.address(LONG_ID, LONG_ID, LONGEST_ADDRESS)
    assert address is not None
    local = _local(address)
    assert local.startswith("bounces+")
    assert len(local.encode()) == 8 + TOKEN_CHARS == 40 <= MAX_LOCAL_PART
    assert address.endswith("@bounces.example.com")
    assert local == local.lower()
    assert local.isascii()


@settings(max_examples=200, deadline=None)
@given(tenant=ids, campaign=ids, email=st.emails())
def test_a_token_comes_back_to_its_delivery(tenant: str, campaign: str, email: str) -> None:
    address = VERP.address(tenant, campaign, email)
    assert address is not None
    assert len(_local(address).encode()) <= MAX_LOCAL_PART
    token = _local(address).partition("+")[2]
    assert VERP.check(token) == delivery_ref(tenant, campaign, email)
    # An MTA that changes case, and the address found anywhere in a header value.
    assert VERP.check(token.upper()) == delivery_ref(tenant, campaign, email)
    found = VERP.find([f"Return-Path: <{address.upper()}>", "To: someone@else.example"])
    assert (found.refs, found.forged) == ([delivery_ref(tenant, campaign, email)], 0)


def test_the_address_is_case_blind_and_the_same_for_every_send() -> None:
    one = VERP.address("t1", "june", "Ann@Example.com")
    assert one == VERP.address("t1", "june", "ann@example.com")
    assert one != VERP.address("t1", "june", "bob@example.com")
    assert one != VERP.address("t2", "june", "ann@example.com")
    assert one != VERP.address("t1", "july", "ann@example.com")


def _flip(token: str, at: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    other = alphabet[(alphabet.index(token[at]) + 1) % 32]
    return token[:at] + other + token[at + 1:]


@pytest.mark.parametrize("at", range(TOKEN_CHARS))
def test_any_changed_character_fails_the_check(at: int) -> None:
    token = VERP.token("t1", "june", "ann@example.com")
    assert VERP.check(_flip(token, at)) is None


def test_forged_tokens_fail_the_check() -> None:
    token = VERP.token("t1", "june", "ann@example.com")
    other_tenant = VERP.token("t2", "june", "ann@example.com")
    raw, other = (base64.b32decode(t.upper()) for t in (token, other_tenant))
    spliced = base64.b32encode(raw[:10] + other[10:]).decode().rstrip("=").lower()
    another_secret = BounceAddresses(Signer(b"x" * 32), "bounces.example.com").token(
        "t1", "june", "ann@example.com")
    for forged in (spliced, another_secret, token[:-1], token + "a", "", "a" * TOKEN_CHARS,
                   "1" * TOKEN_CHARS, "!" * TOKEN_CHARS, "é" * TOKEN_CHARS):
        assert VERP.check(forged) is None, forged
    found = VERP.find([f"bounces+{spliced}@bounces.example.com",
                       f"<bounces+{another_secret}@bounces.example.com>",
                       f"bounces+{token}@old-bounces.example.net"])
    assert found.forged == 2
    assert found.refs == [delivery_ref("t1", "june", "ann@example.com")]  # any domain


def test_a_signature_of_the_reference_is_not_made_for_another_purpose() -> None:
    ref = delivery_ref("t1", "june", "ann@example.com")
    mac = SIGNER.mac(10, "unsubscribe", ref)
    forged = base64.b32encode(bytes.fromhex(ref) + mac).decode().rstrip("=").lower()
    assert VERP.check(forged) is None
    assert not SIGNER.verify_mac(SIGNER.mac(10, "bounce", ref)[:8], 10, "bounce", ref)
    with pytest.raises(ValueError, match="MAC of 4 bytes"):
        SIGNER.mac(4, "bounce", ref)


def _campaign(bounces: BounceAddresses | None) -> CompiledCampaign:
    links = Links(SIGNER, unsubscribe_base_url="https://news.example.com/unsubscribe")
    return CompiledCampaign("t1", "june", Content(subject="Hi", text="Hello"),
                            default_from="News <news@example.com>", links=links,
                            bounces=bounces)


def test_the_envelope_sender_is_the_bounce_address_only_with_a_bounce_domain() -> None:
    with_verp = _campaign(VERP)
    assert with_verp.envelope_for("ann@example.com") == VERP.address(
        "t1", "june", "ann@example.com")
    # No Return-Path header is written: the receiving MTA records MAIL FROM as it.
    _mid, message = with_verp.render(Recipient(email="ann@example.com"))
    assert b"Return-Path" not in message
    for without in (_campaign(None), _campaign(BounceAddresses(SIGNER, None))):
        assert without.envelope_for("ann@example.com") == "news@example.com"
