"""The script lane: the one pipelined connection every script call of a worker shares.

Against the real Redis, directly and through a loopback proxy that can hold back
replies or cut the connection: replies reach their own callers, an error reply fails
only its call, an unknown script falls back to EVAL, batches are cut, and a lost or
silent connection fails the calls in flight and is replaced by the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from newsletter_queue.engine.scripts import LuaScript, ScriptLane


def _script(source: str) -> LuaScript:
    # A comment of its own makes the script new to the server's cache (NOSCRIPT first).
    source = f"-- {uuid.uuid4().hex}\n{source}"
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return LuaScript("test", source, sha, 1)


class HoldingProxy:
    """Forwards one TCP port to Redis; can hold back replies or cut every connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.replies = asyncio.Event()
        self.replies.set()
        self.forwarded = asyncio.Event()  # set when a request goes to Redis
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.url = ""  # the Redis URL that goes through the proxy

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        for pump in (self._pump(reader, up_writer, hold=False),
                     self._pump(up_reader, writer, hold=True)):
            task = asyncio.ensure_future(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    hold: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if hold:
                    await self.replies.wait()
                else:
                    self.forwarded.set()
                writer.write(data)
        writer.close()

    def cut(self) -> None:
        """Close every connection, both sides."""
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def stop(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[HoldingProxy]:
    parts = urlsplit(redis_url)
    if parts.scheme != "redis" or not parts.port:
        pytest.skip(f"the proxy forwards plain TCP; the suite's Redis is {parts.scheme}")
    holding = HoldingProxy(parts.hostname or "127.0.0.1", parts.port)
    await holding.start()
    # The same credentials and database, through the proxy's port.
    userinfo = parts.netloc.rpartition("@")[0]
    holding.url = parts._replace(netloc=(f"{userinfo}@" if userinfo else "")
                                 + f"127.0.0.1:{holding.port}").geturl()
    yield holding
    await holding.stop()


@contextlib.asynccontextmanager
async def lane_through(proxy: HoldingProxy, timeout_s: float) -> AsyncIterator[ScriptLane]:
    client = aioredis.Redis.from_url(proxy.url, decode_responses=True)
    script_lane = ScriptLane(client, timeout_s=timeout_s)
    try:
        yield script_lane
    finally:
        await script_lane.close()
        await client.aclose()


@pytest.fixture
async def lane(redis_url: str) -> AsyncIterator[ScriptLane]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    script_lane = ScriptLane(client, timeout_s=10)
    yield script_lane
    await script_lane.close()
    await client.aclose()


async def test_calls_of_one_turn_get_their_own_replies_in_cut_batches(
        lane: ScriptLane, prefix: str) -> None:
    echo = _script("return {KEYS[1], ARGV[1]}")
    results = await asyncio.gather(*(lane.run(echo, [f"{prefix}:k{i}"], [i])
                                     for i in range(200)))
    assert results == [[f"{prefix}:k{i}", str(i)] for i in range(200)]
    # NOSCRIPT for the first call(s), EVAL once: the next turn runs by SHA alone.
    again = await asyncio.gather(*(lane.run(echo, [f"{prefix}:x"], [i]) for i in range(40)))
    assert again == [[f"{prefix}:x", str(i)] for i in range(40)]
    # 40 calls of one turn go out in batches of at most BATCH_CUT (the first alone:
    # nothing else was outstanding).
    before = lane.batches
    await asyncio.gather(*(lane.run(echo, [f"{prefix}:y"], [i]) for i in range(40)))
    assert 40 // ScriptLane.BATCH_CUT <= lane.batches - before <= 40
    assert lane.connects == 1


async def test_an_error_reply_fails_only_its_own_call(lane: ScriptLane, prefix: str
                                                      ) -> None:
    script = _script("if ARGV[1] == 'bad' then return redis.error_reply('ERR refused "
                     "' .. KEYS[1]) end return ARGV[1]")
    args = ["a", "bad", "b", "bad", "c"]
    results = await asyncio.gather(*(lane.run(script, [f"{prefix}:{i}"], [a])
                                     for i, a in enumerate(args)), return_exceptions=True)
    assert results[0::2] == ["a", "b", "c"]
    for index in (1, 3):
        failure = results[index]
        assert isinstance(failure, ResponseError)
        assert f"refused {prefix}:{index}" in str(failure)
    assert await lane.run(script, [f"{prefix}:after"], ["d"]) == "d"
    assert lane.connects == 1


async def test_error_replies_that_redis_py_makes_connection_errors_are_raised(
        lane: ScriptLane, prefix: str, redis_client: aioredis.Redis) -> None:
    # A server still loading its dataset answers LOADING; redis-py raises BusyLoadingError
    # (a ConnectionError) for it. Here a script gives the same reply.
    loading = _script("redis.call('INCR', KEYS[1]) "
                      "return redis.error_reply('LOADING Redis is loading the dataset')")
    counter = f"{prefix}:tries"
    with pytest.raises(BusyLoadingError):
        await lane.run(loading, [counter], [])
    assert await redis_client.get(counter) == "1"
    # Called as a registered script (the email services' way), a connection error is
    # tried three times, as their redis-py clients do.
    registered = lane.register_script(loading.source)
    with pytest.raises(BusyLoadingError):
        await registered(keys=[counter])
    assert await redis_client.get(counter) == "4"
    noauth = _script("return redis.error_reply('NOAUTH Authentication required.')")
    with pytest.raises(AuthenticationError):
        await lane.run(noauth, [f"{prefix}:k"], [])
    assert lane.connects == 1  # the stream stayed intact


async def test_a_connection_cut_with_calls_in_flight_fails_them_and_is_replaced(
        redis_client: aioredis.Redis, proxy: HoldingProxy, prefix: str) -> None:
    # ``redis_client`` deletes this test's keys afterwards.
    write = _script("redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]")
    async with lane_through(proxy, timeout_s=30) as lane:
        assert await lane.run(write, [f"{prefix}:first"], ["1"]) == "1"
        proxy.replies.clear()  # Redis answers; the proxy keeps the answers
        proxy.forwarded.clear()
        calls = [asyncio.ensure_future(lane.run(write, [f"{prefix}:held{i}"], [str(i)]))
                 for i in range(5)]
        await asyncio.wait_for(proxy.forwarded.wait(), 30)  # the calls reached Redis
        proxy.cut()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError | OSError) for r in results), results
        proxy.replies.set()
        # The next call opens a new connection and works.
        assert await lane.run(write, [f"{prefix}:second"], ["2"]) == "2"
        assert lane.connects == 2
        assert await redis_client.get(f"{prefix}:second") == "2"


async def test_a_silent_connection_is_declared_dead_by_the_watchdog(
        proxy: HoldingProxy, prefix: str) -> None:
    echo = _script("return ARGV[1]")
    async with lane_through(proxy, timeout_s=0.5) as lane:
        assert await lane.run(echo, [f"{prefix}:k"], ["up"]) == "up"
        proxy.replies.clear()
        with pytest.raises(RedisTimeoutError, match="no reply from Redis"):
            await asyncio.wait_for(lane.run(echo, [f"{prefix}:k"], ["held"]), 60)
        proxy.replies.set()
        assert await lane.run(echo, [f"{prefix}:k"], ["back"]) == "back"
        assert lane.connects == 2


async def test_a_closed_lane_refuses_calls_and_fails_those_in_flight(
        lane: ScriptLane, prefix: str) -> None:
    echo = _script("return ARGV[1]")
    assert await lane.run(echo, [f"{prefix}:k"], ["x"]) == "x"
    in_flight = asyncio.ensure_future(lane.run(echo, [f"{prefix}:k"], ["y"]))
    await lane.close()
    with pytest.raises(RedisConnectionError, match="closed"):
        await in_flight
    with pytest.raises(RedisConnectionError, match="closed"):
        await lane.run(echo, [f"{prefix}:k"], ["z"])
