"""Newsletter drafts: the deterministic template draft and the ``Draft`` shape.

The template draft is what the offline provider "writes" and what the processor falls
back to for the subject and preheader when a model's reply is not usable JSON. It
invents no facts: every section of the outline gets a bracketed placeholder for the
editor to fill, and ``notes`` says so.

User text is HTML-escaped in ``html``; ``{{ name }}`` is left for the mail renderer.
"""

from __future__ import annotations

import html as htmllib
import re
from typing import TypedDict

from .models import ContentRequest

PERSONAL_TAG = "{{ name }}"


class Draft(TypedDict):
    subject: str
    preheader: str
    html: str
    text: str


_TONES: dict[str, tuple[str, str]] = {
    # tone: (greeting, sign-off)
    "friendly": (f"Hi {PERSONAL_TAG},", "Talk soon,"),
    "casual": (f"Hey {PERSONAL_TAG}!", "Cheers,"),
    "formal": (f"Dear {PERSONAL_TAG},", "Kind regards,"),
    "professional": (f"Hello {PERSONAL_TAG},", "Best regards,"),
    "enthusiastic": (f"Hi {PERSONAL_TAG}!", "Can't wait to hear what you think,"),
}


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def one_line(text: str, limit: int) -> str:
    """Collapse whitespace (no line breaks: subjects become mail headers) and cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def template_draft(request: ContentRequest) -> Draft:
    """A complete, deterministic draft built from the request alone."""
    topic = one_line(request.topic, 200)
    greeting, sign_off = _TONES.get(request.tone.lower(), _TONES["friendly"])
    audience = request.audience
    subject = _sentence_case(topic)
    suffix = f": what {audience} should know" if audience else ": what you need to know"
    if len(subject) + len(suffix) <= 60:
        subject += suffix
    subject = one_line(subject, 80)

    outline = request.outline
    if outline:
        preheader = f"Inside: {outline[0]}"
        if len(outline) > 1:
            preheader += f" and {len(outline) - 1} more"
    else:
        preheader = f"A short read on {topic}"
    preheader = one_line(preheader, 100)
    intro = f"Here is what's new on {topic}" + (f" for {audience}" if audience else "") + "."

    esc = htmllib.escape
    parts = [f"<h1>{esc(_sentence_case(topic))}</h1>", f"<p>{esc(greeting)}</p>",
             f"<p>{esc(intro)}</p>"]
    lines = [greeting, "", intro, ""]
    for item in outline:
        placeholder = f"[Add two or three sentences about {item}.]"
        parts += [f"<h2>{esc(_sentence_case(item))}</h2>", f"<p>{esc(placeholder)}</p>"]
        lines += [_sentence_case(item), placeholder, ""]
    if not outline:
        placeholder = f"[Add the main story about {topic}.]"
        parts.append(f"<p>{esc(placeholder)}</p>")
        lines += [placeholder, ""]
    parts.append(f"<p>{esc(sign_off)}<br>The team</p>")
    lines += [sign_off, "The team"]
    return Draft(subject=subject, preheader=preheader, html="\n".join(parts),
                 text="\n".join(lines))


_TAG = re.compile(r"<[^>]+>")
_BLOCK_END = re.compile(r"</(p|h[1-6]|li|div|tr)>|<br\s*/?>", re.IGNORECASE)


def html_to_text(markup: str) -> str:
    """A plain-text rendering of simple HTML (for a reply that only gave ``html``)."""
    text = _BLOCK_END.sub("\n", markup)
    text = htmllib.unescape(_TAG.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def text_to_html(text: str) -> str:
    """Escaped paragraphs from plain text (for a reply that only gave text)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "\n".join(
        "<p>" + htmllib.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)
