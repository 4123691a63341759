"""The routes the whole internet calls: the one-click unsubscribe.

``POST /unsubscribe?tenant=…&campaign=…&email=…&sig=…`` with the body
``List-Unsubscribe=One-Click`` (``application/x-www-form-urlencoded`` or
``multipart/form-data``) is what a mailbox provider sends when its user presses
"Unsubscribe" (RFC 8058): no login, no cookie, no confirmation, from any origin. It puts
the address on the tenant's suppression list (reason *unsubscribed*, the campaign named)
and records an ``unsubscribed`` event, once; later POSTs change nothing and still answer
200. ``GET`` of the same URL — what a person clicking the link in the message, or a link
scanner, does — only shows a page with one button that makes that POST: a GET alone
changes nothing.

Only signed input is accepted: a missing, tampered or made-up signature (another address,
campaign or tenant) is a 400 that records nothing. So these routes need no API token even
on a public bind, and they are exempt from the Host and Origin checks of ``security``
(``PUBLIC_PATHS``): they are meant to be reached through the platform's own domain.

The page is plain HTML with no script (its own strict CSP); every value in it is
escaped.
"""

from __future__ import annotations

import html
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ..services.links import Links, LinkTarget
from ..services.store import EventRecord
from ..services.store.records import utcnow
from .context import ApiContext

ONE_CLICK = ("List-Unsubscribe", "One-Click")
_PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
             "base-uri 'none'; frame-ancestors 'none'")
_MAX_FORM_BYTES = 16 * 1024

Param = Annotated[str | None, Query(max_length=400)]


def build_router(ctx: ApiContext) -> APIRouter:
    """The public routes over ``ctx``'s store; links checked with the settings' secret."""
    links = Links.from_settings(ctx.settings)
    router = APIRouter(tags=["public"])

    @router.get("/unsubscribe", response_class=HTMLResponse,
                summary="The unsubscribe page of a signed link: one button, nothing changed "
                        "by the GET itself (400 for a bad signature)")
    async def unsubscribe_page(tenant: Param = None, campaign: Param = None,
                               email: Param = None, sig: Param = None) -> HTMLResponse:
        target = links.check_unsubscribe(tenant, campaign, email, sig)
        if target is None:
            return _invalid()
        store = await ctx.store()
        if await store.get_suppression(target.tenant_id, target.email) is not None:
            return _page("You are unsubscribed",
                         f"<p>{_e(target.email)} gets no more of these emails.</p>")
        action = "?" + urlencode({"tenant": tenant, "campaign": campaign, "email": email,
                                  "sig": sig})
        return _page("Unsubscribe", (
            f"<p>Stop sending these emails to <strong>{_e(target.email)}</strong>?</p>"
            f'<form method="post" action="{_e(action)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            '<button type="submit">Unsubscribe</button></form>'))

    @router.post("/unsubscribe", response_class=HTMLResponse,
                 summary="One-click unsubscribe (RFC 8058): body List-Unsubscribe=One-Click; "
                         "suppresses the address (400 for a bad signature or body)")
    async def unsubscribe(request: Request, tenant: Param = None, campaign: Param = None,
                          email: Param = None, sig: Param = None) -> HTMLResponse:
        target = links.check_unsubscribe(tenant, campaign, email, sig)
        if target is None:
            return _invalid()
        if not await _is_one_click(request):
            return _page("Not unsubscribed", "<p>The request did not say "
                         "<code>List-Unsubscribe=One-Click</code>.</p>", status=400)
        await _unsubscribe(ctx, target)
        return _page("You are unsubscribed",
                     f"<p>{_e(target.email)} gets no more of these emails.</p>")

    return router


async def _unsubscribe(ctx: ApiContext, target: LinkTarget) -> None:
    """Suppress the address; the event once, when it was not suppressed yet."""
    store = await ctx.store()
    added = await store.suppress(target.tenant_id, [target.email], "unsubscribed",
                                 campaign_id=target.campaign_id)
    if added:
        await store.record_events([EventRecord(target.tenant_id, target.campaign_id,
                                               target.email, "unsubscribed", utcnow())])


async def _is_one_click(request: Request) -> bool:
    """Whether the body carries ``List-Unsubscribe=One-Click`` in one of RFC 8058's two
    encodings (parsed with the standard library: no multipart dependency)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return False
    kind = request.headers.get("content-type", "")
    media = kind.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return fields.get(ONE_CLICK[0]) == [ONE_CLICK[1]]
    if media == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {kind}\r\n\r\n".encode("latin-1", "replace") + body)
        for part in message.iter_parts() if message.is_multipart() else ():
            if part.get_param("name", header="content-disposition") == ONE_CLICK[0]:
                value = part.get_payload(decode=True)
                return isinstance(value, bytes) and value.strip() == ONE_CLICK[1].encode()
    return False


def _invalid() -> HTMLResponse:
    return _page("This link is not valid", "<p>It may have been changed or cut short. "
                 "Use the unsubscribe link of the email itself.</p>", status=400)


def _page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\">"
            f"<title>{_e(title)}</title><style>body{{font:16px/1.5 system-ui,sans-serif;"
            f"max-width:34em;margin:3em auto;padding:0 1em}}button{{font:inherit;"
            f"padding:.5em 1.5em}}</style></head><body><h1>{_e(title)}</h1>{body}"
            f"</body></html>")
    return HTMLResponse(page, status_code=status, headers={
        "Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-store"})


def _e(text: str) -> str:
    return html.escape(text, quote=True)
