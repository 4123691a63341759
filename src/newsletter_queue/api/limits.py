"""A cap on request bodies: anything larger than ``Settings.api_max_body_bytes`` is a 413.

A declared ``Content-Length`` over the cap is refused before the app sees the request;
a chunked body is counted as it arrives and refused as soon as it passes the cap. The
rest of an oversized body is read and dropped (never kept, up to ``DRAIN_BYTES``) so the
client, still sending, gets to read the 413 instead of a reset connection; past that the
connection is simply closed after the answer. Jobs themselves are capped lower (512 KiB
of data by default, ``JobLimits``), which answers 422 naming the field at fault.

Uploads: a request for which ``is_upload(scope)`` holds (a campaign's CSV or NDJSON
recipients, ``campaigns.py``) gets the larger ``upload_max_bytes`` cap instead,
``Settings.api_max_upload_bytes``; every other request keeps ``max_bytes``.

Why not FastAPI's ``max_body_size``: it answers a declared oversized body in plain
text, and every error of this API is JSON (``errors.py``). Why not raise from
``receive``: Starlette's ``BaseHTTPMiddleware`` wraps such an exception in an
``ExceptionGroup`` and FastAPI turns it into a 400 or 500, so the middleware answers
the 413 itself and tells the app the client went away.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response, too_large, upload_too_large

DRAIN_BYTES = 64 * 1024 * 1024


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of the body, at most ``budget`` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodyLimitMiddleware:
    """Pure ASGI middleware: it must see the raw ``receive`` to count streamed bytes."""

    def __init__(self, app: ASGIApp, max_bytes: int, *, upload_max_bytes: int = 0,
                 is_upload: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes
        self.is_upload = is_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        refuse = too_large
        if self.is_upload is not None and self.is_upload(scope):
            limit, refuse = self.upload_max_bytes or limit, upload_too_large
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
                if declared < 0:
                    await error_response(400, "invalid Content-Length header")(
                        scope, receive, send)
                    return
                if declared > limit:
                    await _drain(receive, DRAIN_BYTES if declared <= DRAIN_BYTES else 0)
                    await refuse(limit)(scope, receive, send)
                    return
        seen = 0
        started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    if not started:
                        if message.get("more_body", False):
                            await _drain(receive, DRAIN_BYTES)
                        await refuse(limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:  # the 413 went out: drop the app's own answer
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)
