"""Benchmark: the cost of open and click tracking when rendering a message (no Redis).

    python bench/tracking.py [--renders 2000] [--repeats 5]

Builds a 20 KB HTML newsletter (table layout, a style sheet in the head, 30 ``http(s)``
links — one of them ``{{ personalizations.link }}`` — plus a ``mailto:``, an anchor and the
unsubscribe link), compiles it four times — tracking off, opens only, clicks only, both —
and renders ``--renders`` messages for distinct recipients with each, the best of
``--repeats`` runs. For comparison it also times the standard library's ``html.parser``
reading the same rendered HTML once (what a rewriter built on it would pay at least).

Prints, as its last stdout line, one JSON object: ``html_bytes``, ``links``, and the
milliseconds per message of ``off``, ``opens``, ``clicks``, ``both`` and
``html_parser_read``, with ``tracking_extra_ms`` (both − off).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/email.py is named like the standard library's ``email`` package: keep this
# directory off sys.path so that ``import email`` (done by the stdlib) finds the real one.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import json
import time
from html.parser import HTMLParser

from newsletter_queue.jobs import Recipient
from newsletter_queue.services.links import Links
from newsletter_queue.services.render import CompiledCampaign, Content
from newsletter_queue.services.signing import Signer
from newsletter_queue.services.tracking import scan

LINKS = 30
TARGET_BYTES = 20_000


def newsletter() -> str:
    """About 20 KB of table-layout HTML with ``LINKS`` web links."""
    style = ("<style>body{margin:0;padding:0}td{font-family:Arial,sans-serif}"
             ".btn a{color:#fff;text-decoration:none}</style>")
    rows = []
    for i in range(LINKS - 1):
        rows.append(
            f'<tr><td class="story" style="padding:12px 24px;font-size:15px;line-height:22px">'
            f'<h2 style="margin:0 0 6px;font-size:18px">Story {i}: the week in review</h2>'
            f'<p style="margin:0 0 8px">A paragraph of news about item {i}, with enough words '
            f'to look like a real newsletter and a link to '
            f'<a href="https://example.com/articles/{i}?utm_source=news&amp;utm_medium=email" '
            f'style="color:#0366d6">read the whole article</a>.</p></td></tr>')
    rows.append('<tr><td><a href="{{ personalizations.link }}">Your own page</a> · '
                '<a href="mailto:editor@example.com">Write to us</a> · '
                '<a href="#top">Back to top</a></td></tr>')
    body = "".join(rows)
    filler = ('<tr><td style="padding:4px 24px;color:#666;font-size:12px">Some more text of '
              'the kind a footer or a sidebar holds, repeated to reach the size.</td></tr>')
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>News</title>'
            f'{style}</head><body><table role="presentation" width="100%" cellpadding="0" '
            f'cellspacing="0">{body}')
    tail = ('</table><p style="font-size:12px">Hello {{ name }} · '
            '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>')
    while len(page) + len(tail) < TARGET_BYTES:
        page += filler
    return page + tail


def per_message_ms(campaign: CompiledCampaign, renders: int, repeats: int) -> float:
    people = [Recipient(email=f"reader{i}@example.com", name=f"Reader {i}",
                        personalizations={"link": f"https://example.com/me/{i}"})
              for i in range(renders)]
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for person in people:
            campaign.render(person)
        best = min(best, time.process_time() - start)
    return round(best / renders * 1000, 4)


def html_parser_ms(html: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(20):
            parser = HTMLParser()
            parser.feed(html)
            parser.close()
        best = min(best, (time.process_time() - start) / 20)
    return round(best * 1000, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    links = Links(Signer(b"bench-signing-key-0123456789"),
                  unsubscribe_base_url="https://news.example.com/unsubscribe")
    html = newsletter()
    results: dict[str, float | int] = {"html_bytes": len(html)}
    for name, opens, clicks in (("off", False, False), ("opens", True, False),
                                ("clicks", False, True), ("both", True, True)):
        content = Content(subject="News for {{ name }}", html=html, track_opens=opens,
                          track_clicks=clicks)
        campaign = CompiledCampaign("t1", "bench", content, default_from="n@example.com",
                                    links=links)
        results[name] = per_message_ms(campaign, args.renders, args.repeats)
        print(f"{name}: {results[name]} ms per message", file=sys.stderr)
    rendered = html.replace("{{ personalizations.link }}", "https://example.com/me/1")
    results["links"] = sum(1 for h in scan(rendered)[0] if h.url.startswith("http"))
    results["html_parser_read"] = html_parser_ms(rendered, args.repeats)
    results["tracking_extra_ms"] = round(float(results["both"]) - float(results["off"]), 4)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
