"""The HTTP side: ``create_app`` (dev API, dashboard, ``/metrics``, probes), ``serve_api``."""

from __future__ import annotations

from .app import create_app, serve_api
from .security import check_bind, is_loopback

__all__ = ["check_bind", "create_app", "is_loopback", "serve_api"]
