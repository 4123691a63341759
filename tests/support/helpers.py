"""Waiting for things to happen, with a deadline (never a fixed sleep); a silent server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from newsletter_queue.services.links import Links
from newsletter_queue.services.signing import Signer

if TYPE_CHECKING:
    from newsletter_queue.services.sink import SinkHandler

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last={last!r}")


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server on loopback that accepts connections and never answers (a hung or
    black-holed Redis); yields its port."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def wait_for_sink_total(handler: SinkHandler, total: int, *,
                              stall_timeout: float = 120.0) -> None:
    """Wait until the sink accepted ``total`` recipients in all.

    It fails only when no recipient arrives for ``stall_timeout`` seconds: a slow or busy
    machine sends more slowly and is waited for, a send that stopped is reported with how
    far it got.
    """
    while (done := sum(handler.counts.values())) < total:
        try:
            await asyncio.wait_for(handler.wait_for_total(done + 1), stall_timeout)
        except TimeoutError:
            raise AssertionError(f"the sink accepted {done} of {total} recipients, then "
                                 f"nothing for {stall_timeout} s") from None


TEST_LINKS = Links(Signer(b"test-signing-key-" * 2), unsubscribe_base_url="http://127.0.0.1/u")
"""Signed links for tests that compile a ``CompiledCampaign`` by hand."""
