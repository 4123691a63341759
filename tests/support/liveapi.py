"""The dev API served for real: uvicorn on a free loopback port, in its own thread.

Tests talk to it over TCP like any client would (sync ``requests`` from schemathesis,
async ``httpx`` from the load test). The server runs its own event loop in the thread,
so it keeps answering while a test blocks on a synchronous call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings


@contextmanager
def live_api(settings: Settings, *, timeout: float = 60.0) -> Iterator[str]:
    """Serve ``create_app(settings)`` on 127.0.0.1 and yield its base URL."""
    with live_app(create_app(settings), timeout=timeout) as url:
        yield url


@contextmanager
def live_app(app: Any, *, timeout: float = 60.0) -> Iterator[str]:
    """Serve the ASGI ``app`` on 127.0.0.1 and yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    # Waiting on the server's own start-up flag (set once its socket listens).
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the API server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        assert not thread.is_alive(), "the API server did not stop"
