"""A real HTTP server on 127.0.0.1 that speaks OpenAI's chat-completions API.

The one test double the AI tests use: it stands in for the external provider (OpenAI,
vLLM, Ollama) so the tests exercise real HTTP — sockets, status codes, headers,
timeouts — through ``OpenAICompatibleProvider`` and httpx. Starlette app, uvicorn
server, free port, run on the test's event loop.

Each test scripts the answers in order (``reply``, ``rate_limit``, ``error``, ``hang``,
``respond``) and then asserts on ``requests``: the model, the messages and the
``Authorization`` header the server actually received. A request with nothing scripted
gets HTTP 418 so a test never passes on an answer it did not ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Scripted:
    """One scripted answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer (until the server stops): for client timeouts
    raw: str | None = None  # send this text instead of JSON


@dataclass(frozen=True)
class Received:
    """A request the server got."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any
    at: float = 0.0  # time.monotonic() when it arrived

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def model(self) -> Any:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []


def completion_body(content: str, model: str, *, finish_reason: str = "stop",
                    prompt_tokens: int = 11, completion_tokens: int = 7) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Leave pytest's SIGINT handling alone.
        yield


class FakeOpenAI:
    """Start with ``await fake.start()`` (or ``async with``); stop with ``stop()``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: deque[Scripted] = deque()
        self._release = asyncio.Event()
        self._arrived = asyncio.Event()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/{path:path}", self._unknown, methods=["GET", "POST"]),
        ])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting -----------------------------------------------------------------
    def respond(self, answer: Scripted) -> None:
        self._script.append(answer)

    def reply(self, content: str, *, model: str | None = None, **kwargs: Any) -> None:
        """200 with a chat completion whose message is ``content``."""
        self.respond(Scripted(200, {"__completion__": content, "model": model,
                                    "kwargs": kwargs}))

    def rate_limit(self, retry_after: str | None = "1", *,
                   headers: dict[str, str] | None = None) -> None:
        """429, with ``Retry-After: retry_after`` unless it is None."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = retry_after
        self.respond(Scripted(429, {"error": {"message": "Rate limit reached",
                                              "type": "requests", "code": "rate_limit"}},
                              hdrs))

    def error(self, status: int = 500, message: str = "The server had an error") -> None:
        self.respond(Scripted(status, {"error": {"message": message, "type": "server_error"}}))

    def hang(self) -> None:
        self.respond(Scripted(hang=True))

    async def wait_requests(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Wait until at least ``count`` requests arrived."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    # --- handlers --------------------------------------------------------------------
    async def _record(self, request: Request) -> Received:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        received = Received(request.method, request.url.path,
                            {k.lower(): v for k, v in request.headers.items()}, body,
                            time.monotonic())
        self.requests.append(received)
        self._arrived.set()
        return received

    async def _chat(self, request: Request) -> Response:
        received = await self._record(request)
        if not self._script:
            return JSONResponse({"error": {"message": "nothing scripted for this request"}},
                                status_code=418)
        answer = self._script.popleft()
        if answer.hang:
            await self._release.wait()
            return JSONResponse({"error": {"message": "released"}}, status_code=503)
        if answer.raw is not None:
            return Response(answer.raw, status_code=answer.status, headers=answer.headers,
                            media_type="application/json")
        body = answer.body
        if isinstance(body, dict) and "__completion__" in body:
            model = body["model"] or received.model or "fake-model"
            body = completion_body(body["__completion__"], model, **body["kwargs"])
        return JSONResponse(body, status_code=answer.status, headers=answer.headers)

    async def _unknown(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"error": {"message": f"no route {request.url.path}"}},
                            status_code=404)

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> FakeOpenAI:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                access_log=False, timeout_graceful_shutdown=2)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not self._server.started:
                if self._task.done():
                    self._task.result()  # raises the start-up error
                await asyncio.sleep(0.005)
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
