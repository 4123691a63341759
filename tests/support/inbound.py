"""The inbound fixtures (tests/fixtures/inbound/*.eml: DSNs and ARF reports written after
what Postfix, Exim, Gmail, Yahoo and Outlook send), filled in with a real sent message.

Each fixture names the original message through ``${…}`` placeholders: ``RETURN_PATH``
(the envelope sender it was sent with: its bounce address, or the plain sender),
``RECIPIENT``, ``FROM``, ``SUBJECT``, ``MESSAGE_ID``, ``UNSUBSCRIBE_URL``, ``TENANT``
and ``CAMPAIGN``. ``sent_values`` reads them off a message the dev sink captured.
"""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "inbound"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.eml"))


def inbound_fixture(name: str, **values: str) -> bytes:
    """The fixture ``name`` with every placeholder filled (a missing one is a KeyError),
    with CRLF line ends as it travels over SMTP."""
    text = (FIXTURES / f"{name}.eml").read_text(encoding="utf-8")
    return Template(text).substitute(values).replace("\n", "\r\n").encode("utf-8")


def sent_values(captured: Any) -> dict[str, str]:
    """The placeholders' values for a message the sink captured (``CapturedMessage``)."""
    headers = captured.headers
    return {"RETURN_PATH": captured.mail_from, "RECIPIENT": captured.rcpt_tos[0],
            "FROM": headers["From"], "SUBJECT": headers["Subject"],
            "MESSAGE_ID": headers["Message-ID"],
            "UNSUBSCRIBE_URL": headers["List-Unsubscribe"].strip("<>"),
            "TENANT": headers["X-Tenant-ID"], "CAMPAIGN": headers["X-Campaign-ID"]}
