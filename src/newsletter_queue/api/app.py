"""The FastAPI app: health probes, Prometheus metrics, the dev API and the dashboard.

``create_app(settings)`` always serves ``/healthz`` (liveness), ``/readyz`` (Redis
reachable), ``/metrics``, the campaign routes (``/api/tenants/{tenant}/campaigns``,
``campaigns.py``), the suppression list (``suppressions.py``) and the public one-click
unsubscribe (``/unsubscribe``, ``public.py``); the dev API (``/api/dev/...``) and the
dashboard (``/dashboard``) are mounted only when ``settings.dev_mode`` or
``settings.dev_api`` is on. Access rules are in ``security.py``; error shapes in
``errors.py``; the request body caps (1 MiB, and ``NLQ_API_MAX_UPLOAD_BYTES`` for
recipient uploads) in ``limits.py``.

``serve_api`` runs the app alone (the CLI's ``api`` command); ``run_system`` serves the
same app beside the workers. Both go through ``System.serve``, the one uvicorn setup.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..config import Settings, load_settings
from ..manager import QueueManager
from ..system import System
from . import campaigns, dev, jobs, public, suppressions
from .context import ApiContext
from .errors import error_response, install_error_handlers
from .limits import BodyLimitMiddleware
from .metrics import render_metrics
from .security import authorize, check_bind

STATIC = Path(__file__).parent / "static"
DOCS_STATIC = "/docs/static"
DOCS_FILES = Path(fastapi_offline.__file__).parent / "static"


def create_app(settings: Settings | None = None, *, manager: QueueManager | None = None,
               store: Any = None, host: str = "127.0.0.1") -> FastAPI:
    """Build the app.

    Args:
        settings: configuration (``load_settings()`` if omitted).
        manager: a ``QueueManager`` to share; else the app creates (and closes) one.
        store: the records ``Store`` to share (dead letters); else opened on first use.
        host: the address the app will be bound to; a non-loopback one without
            ``NLQ_API_TOKEN`` is refused (``ConfigurationError``).
    """
    settings = settings or load_settings()
    check_bind(settings, host)
    ctx = ApiContext(settings, manager, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm_up = asyncio.create_task(ctx.warm_up())  # connections open before a burst
        yield
        warm_up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warm_up
        await ctx.close()

    # /docs (Swagger UI) and /redoc are the copies in the fastapi-offline package, served
    # by this app: nothing from a CDN (FastAPI's default loads them from jsdelivr on a
    # floating tag, without integrity, and shows nothing without internet).
    app = FastAPI(title="newsletter-queue", version=__version__, lifespan=lifespan,
                  summary="Dev API, dashboard and metrics of the email, analytics and AI "
                          "queues", docs_url=None, redoc_url=None)
    app.state.nlq = ctx
    install_error_handlers(app)

    @app.middleware("http")
    async def access(request: Request, call_next: Any) -> Any:
        server = request.scope.get("server")
        denied = authorize(settings, request.method, server[0] if server else None,
                           request.headers, request.url.path)
        if denied is not None:
            return error_response(denied.status, denied.message)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    # Added last, so outermost: an oversized body is refused before anything reads it.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes,
                       upload_max_bytes=settings.api_max_upload_bytes,
                       is_upload=campaigns.is_upload)

    @app.get("/healthz", tags=["probes"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], summary="Readiness: Redis answers")
    async def readyz() -> JSONResponse:
        try:
            await ctx.redis_ready()
        except Exception as exc:  # any failure to reach Redis means "not ready"
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready", "redis": ctx.manager.url})

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics, read from Redis")
    async def metrics() -> Response:
        body, content_type = await render_metrics(ctx)
        return Response(body, media_type=content_type)

    app.include_router(campaigns.build_router(ctx))
    app.include_router(suppressions.build_router(ctx))
    app.include_router(public.build_router(ctx))
    app.mount(DOCS_STATIC, StaticFiles(directory=DOCS_FILES), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="newsletter-queue API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> Response:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json", title="newsletter-queue API",
            redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_STATIC}/favicon.png", with_google_fonts=False)

    if ctx.dev_enabled:
        app.include_router(dev.build_router(ctx))
        app.include_router(jobs.build_router(ctx))
        app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")

        @app.get("/dashboard", include_in_schema=False)
        async def dashboard() -> FileResponse:
            return FileResponse(STATIC / "dashboard.html", headers={
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                "style-src 'self'; script-src 'self'; frame-src 'none'; "
                "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
                "Cache-Control": "no-store"})

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/dashboard")

    return app


async def serve_api(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000,
                    log_level: str = "info") -> None:
    """Serve ``create_app(settings)`` until SIGINT/SIGTERM, then exit cleanly: a
    ``System`` with the server as its only part (it owns the signals and uvicorn)."""
    async with System(settings) as system:
        await system.serve(create_app(settings, host=host), host=host, port=port,
                           log_level=log_level)
        await system.wait()
