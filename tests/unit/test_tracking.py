"""Open and click tracking without a server: the tokenizer finds the links the standard
library's ``html.parser`` finds (fixed cases and generated documents), the tracker changes
the ``href`` of web links only and adds one pixel where it belongs, every other byte
kept, and the signed links hold only for what they were made for."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import struct
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter_queue.jobs import Recipient
from newsletter_queue.services.links import ClickTarget, Links
from newsletter_queue.services.render import CompiledCampaign, Content
from newsletter_queue.services.signing import Signer
from newsletter_queue.services.tracking import PIXEL_GIF, Tracker, attribute_value, scan
from tests.support import htmlcheck

LINKS = Links(Signer(b"unit-test-signing-key-0123"),
              unsubscribe_base_url="https://news.example.com/unsubscribe")
UNSUBSCRIBE = LINKS.unsubscribe_url("t1", "june", "ann@example.com")


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _click(url: str) -> ClickTarget | None:
    q = _query(url)
    return LINKS.check_click(q.get("tenant"), q.get("campaign"), q.get("email"),
                             q.get("url"), q.get("sig"))


def _track(html: str, *, opens: bool = True, clicks: bool = True) -> str:
    return Tracker(LINKS, "t1", "june", opens=opens, clicks=clicks).apply(
        html, "ann@example.com")


# --- the tokenizer -----------------------------------------------------------------------
@pytest.mark.parametrize(("html", "expected"), [
    ('<a href="https://a.example/">x</a>', ["https://a.example/"]),
    ("<A HREF='https://a.example/'>x</A>", ["https://a.example/"]),
    ("<a href=https://a.example/x?y=1>x</a>", ["https://a.example/x?y=1"]),
    ('<a class="b" href = "  https://a.example/  ">x</a>', ["https://a.example/"]),
    ('<a title="a > b" href="https://a.example/">x</a>', ["https://a.example/"]),
    ('<a href="https://a.example/?a=1&amp;b=2">x</a>', ["https://a.example/?a=1&b=2"]),
    ('<a href="https://a.example/" href="https://b.example/">x</a>', ["https://a.example/"]),
    ('<a name="top">x</a><a href>y</a>', []),
    ('<abbr title="https://a.example/">x</abbr><area href="https://a.example/">', []),
    ('<!-- <a href="https://a.example/">x</a> -->', []),
    ('<!--> <a href="https://a.example/">x</a>', ["https://a.example/"]),
    ('<script>var s = \'<a href="https://a.example/">\';</script>', []),
    ('<style>a[href="https://a.example/"] {}</style>', []),
    ('<title><a href="https://a.example/"></title>', []),
    ('<textarea><a href="https://a.example/"></textarea>', []),
    ('<img alt=\'<a href="https://a.example/">\' src="x.png">', []),
    ('<p>1 < 2 <a href="https://a.example/">x</a></p>', ["https://a.example/"]),
    ('<a href="https://a.example/', []),  # a tag left open runs to the end
    ('<div title="open <a href="https://a.example/">x</a>', []),
])
def test_the_tokenizer_finds_the_links_a_browser_follows(html: str,
                                                         expected: list[str]) -> None:
    assert [h.url for h in scan(html)[0]] == expected


def test_attribute_values_decode_as_in_a_browser() -> None:
    assert attribute_value("?a=1&amp;b=2") == "?a=1&b=2"
    assert attribute_value("?a=1&#38;b=2&#x26;c") == "?a=1&b=2&c"
    # A legacy reference without ';' is not one before '=' or an alphanumeric …
    assert attribute_value("?a=1&copy=2&not3&ampx") == "?a=1&copy=2&not3&ampx"
    # … but is elsewhere, and an unknown name stays as written.
    assert attribute_value("a&copy b&amp;c&nosuch;") == "a© b&c&nosuch;"


_TEXT = st.text(alphabet="abc XYZ.,:-_/?=#", max_size=12)
_VALUE = st.text(alphabet="abc XYZ<>=/-_:.?#", max_size=12)
_URLS = st.sampled_from([
    "https://example.com/a?b=1&amp;c=2", "http://example.com/", "HTTPS://EXAMPLE.COM/X",
    "  https://spaces.example/  ", "mailto:ann@example.com", "tel:+15550100", "#top", "/rel",
    "", "javascript:void(0)", UNSUBSCRIBE.replace("&", "&amp;")])


@st.composite
def _attribute(draw: st.DrawFn, names: st.SearchStrategy[str]) -> str:
    name = draw(names)
    kind = draw(st.sampled_from(["double", "single", "bare", "none"]))
    if kind == "none":
        return name
    value = draw(_VALUE)
    if kind == "double":
        return f'{name}="{value.replace(chr(34), "")}"'
    if kind == "single":
        return f"{name}='{value}'"
    bare = "".join(c for c in value if c not in " <>=\"'") or "v"
    return f"{name}={bare}"


_ATTRS = st.lists(_attribute(st.sampled_from(["class", "id", "title", "data-x", "target"])),
                  max_size=3)


@st.composite
def _fragment(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "link", "link", "tag", "void", "comment",
                                 "script", "style"]))
    attrs = draw(_ATTRS)
    if kind == "text":
        return draw(_TEXT)
    if kind == "link":
        href = draw(_URLS)
        quote_char = draw(st.sampled_from(['"', "'"]))
        attrs.insert(draw(st.integers(0, len(attrs))), f"href={quote_char}{href}{quote_char}")
        return f"<a {' '.join(attrs)}>{draw(_TEXT)}</a>"
    if kind == "tag":
        name = draw(st.sampled_from(["p", "td", "span", "div"]))
        return f"<{name} {' '.join(attrs)}>{draw(_TEXT)}</{name}>"
    if kind == "void":
        return f"<img {' '.join(attrs)}>"
    fake = '<a href="https://hidden.example/">x</a>'
    if kind == "comment":
        return f"<!-- {draw(_TEXT)} {fake} -->"
    return f"<{kind}>{draw(_TEXT)} '{fake}'</{kind}>"


@st.composite
def _document(draw: st.DrawFn) -> str:
    inner = "".join(draw(st.lists(_fragment(), max_size=12)))
    if draw(st.booleans()):
        return f"<!DOCTYPE html><html><head><title>t</title></head><body>{inner}</body></html>"
    return inner


@settings(max_examples=300, deadline=None)
@given(_document())
def test_the_tokenizer_agrees_with_html_parser(html: str) -> None:
    assert [h.url for h in scan(html)[0]] == htmlcheck.hrefs(html)


@settings(max_examples=300, deadline=None)
@given(_document())
def test_tracking_changes_web_links_and_adds_a_pixel_nothing_else(html: str) -> None:
    tracked = _track(html)
    before, after = htmlcheck.events(html), htmlcheck.events(tracked)
    pixels = [e for e in after if e[0] == "start" and e[1] == "img"
              and dict(e[2]).get("src", "").startswith("https://news.example.com/t/o?")]
    assert len(pixels) == 1
    after.remove(pixels[0])
    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        if old[0] != "start" or old[1] != "a" or old == new:
            assert old == new
            continue
        # Only the first href changed, to a click link that leads where it did.
        index = next(i for i, (k, _) in enumerate(old[2]) if k == "href")
        assert [a for i, a in enumerate(old[2]) if i != index] == \
            [a for i, a in enumerate(new[2]) if i != index]
        original = (old[2][index][1] or "").strip(" \t\n\r\f")
        target = _click(new[2][index][1] or "")
        assert target is not None
        assert (target.tenant_id, target.campaign_id, target.email, target.url) == \
            ("t1", "june", "ann@example.com", original)
        assert original.lower().startswith(("http://", "https://"))
        assert not original.startswith("https://news.example.com/unsubscribe?")


# --- the tracker -------------------------------------------------------------------------
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>June</title></head>
<body><table role="presentation"><tr><td>
<p><a href="https://example.com/june?utm_source=news&amp;utm_medium=email">Read</a>
<a href="http://example.com/plain">Plain</a> <a href="mailto:ed@example.com">Mail</a>
<a href="tel:+15550100">Call</a> <a href="#top">Top</a> <a href="/relative">Here</a></p>
<p><a href="UNSUB">Unsubscribe</a></p>
</td></tr></table></body>
</html>""".replace("UNSUB", UNSUBSCRIBE.replace("&", "&amp;"))


def test_the_pixel_goes_before_the_end_of_the_body_and_the_page_stays_valid() -> None:
    tracked = _track(PAGE)
    htmlcheck.assert_well_formed(PAGE)
    htmlcheck.assert_well_formed(tracked)
    pixel = tracked.index("<img ")
    assert tracked[pixel:].split("/>", 1)[1] == "</body>\n</html>"
    (image,) = htmlcheck.images(tracked)
    assert (image["width"], image["height"], image["alt"]) == ("1", "1", "")
    assert "display:block" in (image["style"] or "")
    q = _query(image["src"] or "")
    assert LINKS.check_open(q["tenant"], q["campaign"], q["email"], q["sig"]) is not None
    assert urlsplit(image["src"]).path == "/t/o"
    # Without a </body> the pixel is the last thing; the last </body> is the one.
    assert _track("<p>Hi</p>").startswith("<p>Hi</p><img ")
    two = _track("<body>a</body><!-- --></BODY >")
    assert two.index("<img ") > two.index("<!-- -->")


def test_only_web_links_are_redirected() -> None:
    tracked = _track(PAGE, opens=False)
    assert "<img" not in tracked
    links = htmlcheck.hrefs(tracked)
    assert [_click(u).url for u in links[:2]] == [  # type: ignore[union-attr]
        "https://example.com/june?utm_source=news&utm_medium=email",
        "http://example.com/plain"]
    assert links[2:] == ["mailto:ed@example.com", "tel:+15550100", "#top", "/relative",
                         UNSUBSCRIBE]
    # Nothing else moved: undo the two rewrites and the page is the same bytes.
    for href in scan(tracked)[0][:2][::-1]:
        original = _click(href.url).url.replace("&", "&amp;")  # type: ignore[union-attr]
        tracked = f'{tracked[:href.start]}"{original}"{tracked[href.end:]}'
    assert tracked == PAGE


def test_opens_alone_leave_the_links_alone() -> None:
    tracked = _track(PAGE, clicks=False)
    assert htmlcheck.hrefs(tracked) == htmlcheck.hrefs(PAGE)
    assert len(htmlcheck.images(tracked)) == 1


def test_a_rendered_campaign_tracks_templated_links_and_keeps_its_text_part() -> None:
    content = Content(subject="Hi", html='<p><a href="{{ personalizations.page }}">Mine</a>'
                      '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
                      text="Mine: {{ personalizations.page }}", track_opens=True,
                      track_clicks=True)
    campaign = CompiledCampaign("t1", "june", content, default_from="n@example.com",
                                links=LINKS)
    page = "https://example.com/me?id=7&x=<1>"
    _, raw = campaign.render(Recipient(email="ann@example.com",
                                       personalizations={"page": page}))
    text, html = _parts(raw)
    assert text == "Mine: https://example.com/me?id=7&x=<1>"  # the text part as it was
    urls = htmlcheck.hrefs(html)
    assert _click(urls[0]).url == page  # type: ignore[union-attr]
    assert urls[1] == LINKS.unsubscribe_url("t1", "june", "ann@example.com")
    # Off: the HTML is what the template made.
    plain = CompiledCampaign("t1", "june", Content(subject="Hi", html=content.html),
                             default_from="n@example.com", links=LINKS)
    _, raw = plain.render(Recipient(email="ann@example.com", personalizations={"page": page}))
    assert htmlcheck.hrefs(_parts(raw)[1])[0] == page
    assert "/t/" not in _parts(raw)[1]


def _parts(raw: bytes) -> tuple[str, str]:
    """The decoded text and HTML parts of a rendered message."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    found = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            found[part.get_content_subtype()] = part.get_content()
    return found.get("plain", ""), found.get("html", "")


# --- the links ---------------------------------------------------------------------------
def test_a_click_link_holds_for_its_own_url_and_recipient_only() -> None:
    own = LINKS.for_recipient("t1", "june", "Ann@Example.com")
    url = "https://example.com/a?b=1&c=2#frag"
    q = _query(own.click_url(url))
    assert q["url"] == url
    assert q["email"] == "Ann@Example.com"
    assert LINKS.check_click(q["tenant"], q["campaign"], q["email"], url, q["sig"]) == \
        ClickTarget("t1", "june", "Ann@Example.com", url)
    for changed in ({"url": "https://evil.example/"}, {"url": url + "x"},
                    {"email": "bob@example.com"}, {"campaign": "july"}, {"tenant": "t2"},
                    {"sig": "A" * 22}, {"sig": ""}, {"url": ""}):
        f = {**q, **changed}
        assert LINKS.check_click(f["tenant"], f["campaign"], f["email"], f["url"],
                                 f["sig"]) is None, changed
    # The open signature is worthless for a click and the other way round.
    o = _query(own.open_url)
    assert LINKS.check_click(o["tenant"], o["campaign"], o["email"], url, o["sig"]) is None
    assert LINKS.check_open(q["tenant"], q["campaign"], q["email"], q["sig"]) is None
    assert LINKS.check_open(o["tenant"], o["campaign"], o["email"], o["sig"]) is not None
    # Even a signed link leads nowhere but to the web.
    for target in ("javascript:alert(1)", "data:text/html,x", "//evil.example/"):
        sig = LINKS.signer.sign("click", "t1", "june", "ann@example.com", target)
        assert LINKS.check_click("t1", "june", "ann@example.com", target, sig) is None


def test_the_tracking_base_is_the_unsubscribe_api_unless_set() -> None:
    signer = Signer(b"k" * 32)
    assert Links(signer, unsubscribe_base_url="https://n.example/nlq/unsubscribe"
                 ).for_recipient("t", "c", "a@x").open_url.startswith(
        "https://n.example/nlq/t/o?tenant=t&campaign=c&email=a%40x&sig=")
    own = Links(signer, unsubscribe_base_url="https://n.example/unsubscribe",
                tracking_base_url="https://links.example/").for_recipient("t", "c", "a@x")
    assert own.click_url("https://x.example/").startswith("https://links.example/t/c?")


@given(st.text(max_size=40))
def test_links_quote_as_urllib_does(value: str) -> None:
    url = LINKS.for_recipient("t1", "june", "ann@example.com").click_url(
        "https://x.example/" + value)
    try:
        expected = quote("https://x.example/" + value, safe="")
    except UnicodeEncodeError:  # a lone surrogate: urllib refuses, the link keeps it
        return
    assert f"&url={expected}&" in url


def test_signatures_are_plain_hmac_sha256() -> None:
    key = b"unit-test-signing-key-0123"
    raw = hmac.new(key, b"click\x1ft1\x1fjune\x1fa@x\x1fu", hashlib.sha256).digest()[:16]
    assert Signer(key).sign("click", "t1", "june", "a@x", "u") == \
        base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_the_pixel_is_a_transparent_one_by_one_gif() -> None:
    assert PIXEL_GIF[:6] == b"GIF89a"
    assert struct.unpack("<HH", PIXEL_GIF[6:10]) == (1, 1)
    control = PIXEL_GIF.index(b"\x21\xf9\x04")  # graphic control extension
    assert PIXEL_GIF[control + 3] & 1  # transparent colour flag
    assert PIXEL_GIF.endswith(b";")
    assert len(PIXEL_GIF) == 43
