"""Open and click tracking: what a campaign that opted in does to each recipient's HTML.

A campaign saved with ``track_opens`` gets a 1×1 transparent GIF at the end of its HTML
body (just before ``</body>``, or at the very end when there is none) whose address is
the recipient's signed open link; one saved with ``track_clicks`` has every ``http`` and
``https`` link (``<a href>``) pointing at the recipient's signed click redirect, which
records the click and sends the reader on to the original URL. ``mailto:``, ``tel:``,
anchors (``#…``), relative links and the unsubscribe link are left as they are, and so
is the text part. The links are signed by ``links.Links``; the routes that answer them
are in ``api.tracking``.

The rewriting is done on the rendered HTML of each recipient, so a link that comes from
the template's data (``href="{{ personalizations.link }}"``, or a whole block of
personalised markup) is tracked like a literal one, and the signature covers the URL
the recipient actually got.

Why a tokenizer of our own instead of ``html.parser``: the standard library's parser
takes about 1.4 ms just to read a 20 KB newsletter with 30 links — twice what rendering
and encoding the whole message costs (0.7 ms) — because it calls back into Python for
every tag and attribute; ``scan`` reads it in about 0.26 ms (``bench/tracking.py``;
``tests/unit/test_tracking.py`` checks that the two find the same links). ``_SCAN``
follows the tokenizer of the HTML standard for what decides where a link is: comments
(and the bogus comments of ``<!…>``, ``<?…>``, ``</…>``), elements whose content is text
(``script``, ``style``, ``textarea``, ``title``, ``xmp``, ``iframe``, ``noembed``,
``noframes``), and tags with their attributes, quoted or not (a ``>`` inside a quoted
value does not end a tag; a tag left open runs to the end, as in a browser). One
regular-expression match skips everything up to the next ``<a …>`` or ``</body>``, so
the work in Python is per link, not per tag; the document is then spliced: only the
``href`` values change (written double-quoted and escaped), every other byte is kept.
Attribute values are decoded as a browser decodes them (a legacy entity without ``;``
before ``=`` or a letter stays as written: ``?a=1&copy=2``). Links inside conditional
comments (``<!--[if mso]>…<![endif]-->``) are comments to this tokenizer, as to every
reader but Outlook, and are not tracked.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from html import escape, unescape
from html.entities import html5

from .links import MAX_TRACKED_URL, Links, is_web_url

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
"""A 1×1 transparent GIF (43 bytes): what the open link answers."""

_PIXEL = ('<img src="{src}" width="1" height="1" alt="" style="display:block;'
          'width:1px;height:1px;max-width:1px;max-height:1px;border:0;margin:0;padding:0;'
          'overflow:hidden" />')

# --- the tokenizer ----------------------------------------------------------------------
_WS = r"\t\n\f\r "  # HTML's white space, for the patterns
_SPACE = "\t\n\f\r "  # the same characters, for str.strip
_TAG_END = rf"(?=[{_WS}/>])"
# Attributes and the end of a tag: names end at space, '/', '>' or '='; a value is quoted
# or runs to space or '>'. Possessive quantifiers: a tag that never ends costs one pass.
_ATTRS = (rf"(?:[{_WS}/]*+[^{_WS}/>][^{_WS}/>=]*+(?:[{_WS}]*+=[{_WS}]*+"
          rf"(?:\"[^\"]*+\"|'[^']*+'|[^{_WS}>]*+))?)*+[{_WS}/]*+>")
_TEXT_ELEMENTS = ("script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                  "noframes")
_SKIP = "|".join([
    r"[^<]++",                                              # text
    r"<!--(?:>|->|.*?(?:--!?>|\Z))",                        # comment
    r"<(?:!|\?|/(?![A-Za-z]))[^>]*+(?:>|\Z)",               # doctype, bogus comment
    *(rf"<{name}{_TAG_END}{_ATTRS}.*?(?:</{name}{_TAG_END}{_ATTRS}|\Z)"  # text content
      for name in _TEXT_ELEMENTS),
    rf"<(?!a{_TAG_END}|/body{_TAG_END})/?[A-Za-z][^{_WS}/>]*+{_ATTRS}",  # any other tag
    r"<(?![A-Za-z!?/])",                                    # a '<' that starts no tag
])
_SCAN = re.compile(
    rf"(?:{_SKIP})*+(?:(?P<a><a{_TAG_END}{_ATTRS})|(?P<body></body{_TAG_END}{_ATTRS})|<.*)?",
    re.DOTALL | re.IGNORECASE)
_ATTR = re.compile(rf"[{_WS}/]*+(?P<name>[^{_WS}/>][^{_WS}/>=]*+)(?:[{_WS}]*+=[{_WS}]*+"
                   rf"(?P<value>\"[^\"]*+\"|'[^']*+'|[^{_WS}>]*+))?")
_REFERENCE = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|([A-Za-z][A-Za-z0-9]*)(;?))")
_LEGACY = frozenset(name for name in html5 if not name.endswith(";"))
_BODY_CLOSE = re.compile(r"</body[\t\n\f\r />]", re.IGNORECASE)
_SPECIAL = re.compile("[<>\"']")


@dataclass(frozen=True, slots=True)
class Href:
    """An ``<a href>`` of a document: where its value is (quotes included) and the URL
    it stands for (entities decoded, surrounding spaces stripped)."""

    start: int
    end: int
    url: str


def scan(html: str) -> tuple[list[Href], int | None]:
    """The ``href`` of every ``<a>`` element, in order, and where the last ``</body>``
    starts (``None``: there is none)."""
    hrefs: list[Href] = []
    body: int | None = None
    pos, size = 0, len(html)
    while pos < size:
        match = _SCAN.match(html, pos)
        assert match is not None  # every part of the pattern may match nothing
        if match.start("a") >= 0:
            href = _href(html, match.start("a"), match.end("a"))
            if href is not None:
                hrefs.append(href)
        elif match.start("body") >= 0:
            body = match.start("body")
        else:
            break  # the end, or a tag left open that runs to it
        pos = match.end()
    return hrefs, body


def _href(html: str, start: int, end: int) -> Href | None:
    """The first ``href`` attribute of the ``<a …>`` tag at ``html[start:end]`` (a
    browser keeps the first of repeated attributes)."""
    pos = start + 2
    while True:
        attr = _ATTR.match(html, pos, end - 1)
        if attr is None or attr.end() == pos:
            return None
        pos = attr.end()
        if attr["name"].lower() != "href":
            continue
        value = attr["value"]
        if value is None:
            return None
        raw = value[1:-1] if value[:1] in ("'", '"') else value
        return Href(attr.start("value"), attr.end("value"),
                    attribute_value(raw).strip(_SPACE))


def attribute_value(raw: str) -> str:
    """An attribute value with its character references decoded as the HTML standard
    does in attributes: a legacy named reference without ``;`` followed by ``=`` or an
    alphanumeric stays as written."""
    if "&" not in raw:
        return raw

    def decode(ref: re.Match[str]) -> str:
        name, semicolon = ref.group(1), ref.group(2)
        if name is None or semicolon:
            return unescape(ref.group(0))
        # Without ';' only a legacy name is a reference — and not before '=' or a letter
        # (the longest legacy prefix of the name followed by more letters is not either).
        following = raw[ref.end():ref.end() + 1]
        if name in _LEGACY and following != "=":
            return unescape(ref.group(0))
        return ref.group(0)

    return _REFERENCE.sub(decode, raw)


# --- the rewriting ----------------------------------------------------------------------
class Tracker:
    """Adds the pixel and the click redirects of one campaign to each recipient's HTML.

    Args:
        links: makes the signed links.
        tenant_id, campaign_id: the campaign.
        opens: add the open pixel.
        clicks: point ``http``/``https`` links at the click redirect.
    """

    def __init__(self, links: Links, tenant_id: str, campaign_id: str, *, opens: bool,
                 clicks: bool) -> None:
        self.links = links
        self.tenant_id = tenant_id
        self.campaign_id = campaign_id
        self.opens = opens
        self.clicks = clicks

    def apply(self, html: str, email: str) -> str:
        """``html`` with this recipient's pixel and click links."""
        own = self.links.for_recipient(self.tenant_id, self.campaign_id, email)
        if self.clicks:
            hrefs, body = scan(html)
        else:  # the pixel alone: no need to look at every tag
            hrefs, body = [], _last_body_close(html)
        pieces: list[str] = []
        done = 0
        for href in hrefs:
            if not self._tracks(href.url):
                continue
            pieces += [html[done:href.start], '"', _attribute(own.click_url(href.url)), '"']
            done = href.end
        if self.opens:
            at = len(html) if body is None else body
            pieces += [html[done:at], _PIXEL.format(src=escape(own.open_url))]
            done = at
        pieces.append(html[done:])
        return "".join(pieces)

    def _tracks(self, url: str) -> bool:
        return (is_web_url(url) and len(url) <= MAX_TRACKED_URL
                and not self.links.is_unsubscribe_url(url)
                and not self.links.is_tracking_url(url))


def _attribute(url: str) -> str:
    """``url`` escaped for a double-quoted attribute: ``html.escape``, but for one of our
    links (percent-encoded but for its base) that is replacing ``&``, at a fifth of the
    cost."""
    return escape(url) if _SPECIAL.search(url) else url.replace("&", "&amp;")


def _last_body_close(html: str) -> int | None:
    """Where the last ``</body>`` starts, looking at the text alone (with the pixel alone
    a ``</body>`` inside a trailing comment would hide it: no template does that)."""
    last = None
    for match in _BODY_CLOSE.finditer(html):
        last = match.start()
    return last
