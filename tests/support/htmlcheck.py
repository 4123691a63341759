"""HTML as the standard library's ``html.parser`` reads it: the events of a document, its
links, and a well-formedness check (every element closed, in order).

The tracking tests use it as the independent reader of what the tracker wrote: the
tracker has a tokenizer of its own, and ``html.parser`` is what it is checked against.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                  "meta", "source", "track", "wbr"})
Event = tuple[Any, ...]


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[Event] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, tuple(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.events.append(("start", tag, tuple(attrs)))
        if tag not in VOID:
            self.events.append(("end", tag))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if self.events and self.events[-1][0] == "data":  # text may come in pieces
            self.events[-1] = ("data", self.events[-1][1] + data)
        else:
            self.events.append(("data", data))

    def handle_comment(self, data: str) -> None:
        self.events.append(("comment", data))

    def handle_decl(self, decl: str) -> None:
        self.events.append(("decl", decl))

    def handle_pi(self, data: str) -> None:
        self.events.append(("pi", data))

    def unknown_decl(self, data: str) -> None:
        self.events.append(("unknown", data))


def events(html: str) -> list[Event]:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader.events


def hrefs(html: str) -> list[str]:
    """The first ``href`` of every ``<a>`` that has one with a value, stripped, in order."""
    found = []
    for event in events(html):
        if event[0] == "start" and event[1] == "a":
            value = next((v for k, v in event[2] if k == "href"), None)
            if value is not None:
                found.append(value.strip(" \t\n\r\f"))
    return found


def images(html: str) -> list[dict[str, str | None]]:
    """The attributes of every ``<img>``."""
    return [dict(e[2]) for e in events(html) if e[0] == "start" and e[1] == "img"]


def assert_well_formed(html: str) -> None:
    """Every non-void element is closed, in order; void elements are never closed; there
    is no stray end tag, nothing after ``</html>`` but space, and ``<img>`` only in the
    body."""
    stack: list[str] = []
    closed_html = False
    for event in events(html):
        kind = event[0]
        if closed_html:
            assert kind == "data", f"after </html>: {event}"
            assert not event[1].strip(), f"after </html>: {event}"
        if kind == "start":
            tag = event[1]
            if tag == "img":
                assert "body" in stack, f"<img> outside <body>: {event}"
            if tag not in VOID:
                stack.append(tag)
        elif kind == "end":
            tag = event[1]
            assert tag not in VOID, f"a void element closed: </{tag}>"
            assert stack, f"</{tag}> closes nothing"
            assert stack[-1] == tag, f"</{tag}> closes <{stack[-1]}> ({stack})"
            stack.pop()
            closed_html = tag == "html"
    assert not stack, f"never closed: {stack}"
