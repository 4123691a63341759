"""The text parts of a rendered message: sent as they are (7bit) when they can be, else
quoted-printable — and read back by the standard library's parser as what was rendered,
whichever it is."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter_queue.jobs import Recipient
from newsletter_queue.services.links import Links
from newsletter_queue.services.render import CompiledCampaign, Content
from newsletter_queue.services.signing import Signer

LINKS = Links(Signer(b"unit-test-signing-key-0123"),
              unsubscribe_base_url="https://news.example.com/unsubscribe")


def _render(html: str | None, text: str | None, body: str = "") -> EmailMessage:
    """Render ``html``/``text`` templates for a reader whose ``personalizations.body`` is
    ``body`` (what a template cannot hold literally: Jinja drops a template's last line
    end and turns its CRs into line ends)."""
    campaign = CompiledCampaign("t1", "june", Content(subject="S", html=html, text=text),
                                default_from="News <news@example.com>", links=LINKS)
    reader = Recipient(email="ann@example.com", name="Ann", personalizations={"body": body})
    raw = campaign.render(reader)[1]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _parts(message: EmailMessage) -> dict[str, tuple[str, str]]:
    """content type → (transfer encoding, decoded body with LF line ends)."""
    return {part.get_content_type(): (str(part["Content-Transfer-Encoding"]),
                                      part.get_content().replace("\r\n", "\n"))
            for part in message.walk() if not part.is_multipart()}


BODY = "{{ personalizations.body }}"


def test_short_ascii_lines_go_as_they_are() -> None:
    html = '<p>Hello <a href="https://a.example/?x=1&amp;y=2">you</a></p>\n<p>Bye</p>'
    parts = _parts(_render(html, "Hello =you=\nBye"))
    assert parts["text/html"] == ("7bit", html)
    assert parts["text/plain"] == ("7bit", "Hello =you=\nBye")


@pytest.mark.parametrize(("body", "why"), [
    ("x" * 999 + "\n", "a line longer than 998 characters"),
    ("Grüße aus Köln\n", "not ASCII"),
    ("a\rb\n", "a bare CR"),
])
def test_other_bodies_are_quoted_printable(body: str, why: str) -> None:
    encoding, decoded = _parts(_render(None, BODY, body))["text/plain"]
    assert encoding == "quoted-printable", why
    assert decoded == body  # a CR alone travels as =0D


def test_998_characters_is_still_a_line_as_it_is() -> None:
    line = "y" * 998 + "\n"
    assert _parts(_render(None, BODY, line))["text/plain"] == ("7bit", line)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\0"),
               max_size=3000))
def test_any_text_reads_back_as_rendered(body: str) -> None:
    encoding, decoded = _parts(_render(None, BODY, body))["text/plain"]
    assert encoding in ("7bit", "quoted-printable")
    assert decoded == body
