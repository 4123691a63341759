"""The open pixel and the click redirect: public routes that record what readers do.

``GET /t/o?tenant=…&campaign=…&email=…&sig=…`` answers a 1×1 transparent GIF and records
an ``opened`` event; ``GET /t/c?tenant=…&campaign=…&email=…&url=…&sig=…`` records a
``clicked`` event with the URL and answers ``302`` to it. Both are what a campaign saved
with ``track_opens``/``track_clicks`` puts in each recipient's HTML
(``services.tracking``), signed by ``services.links``.

Every hit records one event: the totals (``opens``, ``clicks``) count them all, the
unique counts and rates count distinct recipients (``services.store.aggregate``).

Only signed input is accepted, so the routes need no token on a public bind and are
exempt from the Host and Origin checks (``security.PUBLIC_PATHS``), like the unsubscribe
routes. A missing, tampered or made-up signature — another address, campaign or tenant,
or a click whose ``url`` was changed, the open-redirect attempt — is a 400 that records
nothing and redirects nowhere. The pixel's 400 still carries the GIF, so an old message
read after the signing secret changed shows no broken image.

``HEAD`` answers as ``GET`` does (the GIF's headers; the 302 and its ``Location``) and
records nothing: link scanners and mail security gateways check links with it, and no
reader opens a message with a HEAD. Scanners that fetch with ``GET`` (and image proxies
that load the pixel ahead of the reader, such as Apple Mail Privacy Protection) are
counted: telling them from readers would be guesswork, so the documentation says what
the numbers mean instead (docs/email.md).

Answers are ``Cache-Control: no-store`` (a cached pixel would hide the next open). If the
records store cannot take the event, the reader still gets the image or the redirect,
and the failure is logged: a broken link would cost more than a lost count.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..services.links import CLICK_PATH, MAX_TRACKED_URL, OPEN_PATH, Links, LinkTarget
from ..services.store import EventRecord, EventType
from ..services.store.records import utcnow
from ..services.tracking import PIXEL_GIF
from .context import ApiContext

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store, private, max-age=0", "Pragma": "no-cache"}
TRACKING_PATHS = frozenset({OPEN_PATH, CLICK_PATH})

Param = Annotated[str | None, Query(max_length=400)]
Url = Annotated[str | None, Query(max_length=MAX_TRACKED_URL)]


def build_router(ctx: ApiContext, links: Links) -> APIRouter:
    """The pixel and redirect routes over ``ctx``'s store, checked by ``links``."""
    router = APIRouter(tags=["public"])

    @router.get(OPEN_PATH, response_class=Response,
                summary="The open pixel of a signed link: a 1×1 GIF; records an open "
                        "(400 for a bad signature, nothing recorded)",
                responses={200: {"content": {"image/gif": {}}},
                           400: {"content": {"image/gif": {}}}})
    async def opened(request: Request, tenant: Param = None, campaign: Param = None,
                     email: Param = None, sig: Param = None) -> Response:
        target = links.check_open(tenant, campaign, email, sig)
        if target is not None and request.method == "GET":
            await _record(ctx, target, "opened")
        return Response(PIXEL_GIF, status_code=200 if target else 400,
                        media_type="image/gif", headers=NO_STORE)

    @router.get(CLICK_PATH, response_class=Response,
                summary="The click redirect of a signed link: 302 to its URL; records a "
                        "click (400 for a bad signature or a changed URL)",
                responses={302: {"description": "to the link's URL"},
                           400: {"content": {"text/html": {}}}})
    async def clicked(request: Request, tenant: Param = None, campaign: Param = None,
                      email: Param = None, url: Url = None, sig: Param = None) -> Response:
        target = links.check_click(tenant, campaign, email, url, sig)
        if target is None:
            return HTMLResponse(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
                "This link is not valid</title></head><body><h1>This link is not valid"
                "</h1><p>It may have been changed or cut short.</p></body></html>",
                status_code=400, headers={**NO_STORE, "Content-Security-Policy":
                                          "default-src 'none'; frame-ancestors 'none'"})
        if request.method == "GET":
            await _record(ctx, target, "clicked", target.url)
        return RedirectResponse(target.url, status_code=302, headers=NO_STORE)

    # HEAD answers as GET does and records nothing (link scanners: see the docstring).
    router.head(OPEN_PATH, response_class=Response, name="opened_head",
                summary="The open pixel's headers; records nothing")(opened)
    router.head(CLICK_PATH, response_class=Response, name="clicked_head",
                summary="The click redirect's headers; records nothing")(clicked)
    return router


async def _record(ctx: ApiContext, target: LinkTarget, kind: EventType,
                  url: str | None = None) -> None:
    """One event per hit; a store that fails is logged, not shown to the reader."""
    try:
        store = await ctx.store()
        await store.record_events([EventRecord(target.tenant_id, target.campaign_id,
                                               target.email, kind, utcnow(), url=url)])
    except Exception:  # any store failure: the reader still gets the image or the page
        log.exception("could not record a %s event of campaign %r (tenant %r)", kind,
                      target.campaign_id, target.tenant_id)
