"""BullMQ's Lua scripts, loaded from the installed ``bullmq`` package and run by SHA.

Why not ``bullmq``'s own script objects: they go through redis-py's ``Script`` wrapper,
which re-checks the script cache and builds argument lists on every call. The worker's
hot path makes one script call per job, so we keep that call as thin as possible:

- The source is read once from the pinned ``bullmq`` package (``bullmq/commands/*.lua``)
  via ``importlib.resources`` — never copied into this repository, so upgrading the pin
  upgrades the scripts and their KEYS/ARGV contract together.
- Calls are ``EVALSHA sha numkeys *keys *args`` with raw argument lists; a
  ``NOSCRIPT`` reply (fresh or restarted server, ``SCRIPT FLUSH``) falls back to
  ``EVAL``, which also re-populates the server's script cache.
- ``ScriptLane`` packs them with hiredis (C) and pipelines them on one connection made
  from the client's pool settings. Measured here, redis-py's ``execute_command``
  spends ~50 µs per script call packing 20 arguments in Python and doing pool
  bookkeeping — more than the script itself — and one ``send`` syscall per call costs
  another ~25 µs. Cluster clients use ``execute_command``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import hiredis
from redis._parsers import BaseParser  # its error-reply → exception mapping
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..connection import AnyRedis

# The scripts the engine runs, by name → file in ``bullmq/commands``. The number in the
# file name is the number of KEYS the script takes.
SCRIPT_FILES: dict[str, str] = {
    "addLog": "addLog-2.lua",
    "extendLocks": "extendLocks-1.lua",
    "getMetrics": "getMetrics-2.lua",
    "moveJobFromActiveToWait": "moveJobFromActiveToWait-9.lua",
    "moveStalledJobsToWait": "moveStalledJobsToWait-9.lua",
    "moveToActive": "moveToActive-11.lua",
    "moveToDelayed": "moveToDelayed-11.lua",
    "moveToFinished": "moveToFinished-14.lua",
    "retryJob": "retryJob-11.lua",
    "updateProgress": "updateProgress-3.lua",
}


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One Lua script of the installed ``bullmq`` package."""

    name: str
    source: str
    sha: str
    num_keys: int  # -1: any number


_RETRY_PAUSES_S = (0.05, 0.1)  # then a last try: as redis-py's ExponentialBackoff(0.05)


class LaneScript:
    """A Lua script run through a ``ScriptLane``, called as redis-py's registered scripts
    are (``await script(keys=[…], args=[…])``), so the services that take either client
    call it the same way."""

    __slots__ = ("lane", "script")

    def __init__(self, lane: ScriptLane, source: str) -> None:
        self.lane = lane
        sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        self.script = LuaScript("registered", source, sha, -1)

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        keys = [str(k) for k in keys]
        for pause in _RETRY_PAUSES_S:
            try:
                return await self.lane.run(self.script, keys, args)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                # What the services' redis-py clients do (``connection.create_redis``): a
                # blip (a reset connection, a server still loading) is retried twice.
                await asyncio.sleep(pause)
        return await self.lane.run(self.script, keys, args)


@cache
def load_script(name: str) -> LuaScript:
    """Read script ``name`` from the installed ``bullmq`` package (cached)."""
    filename = SCRIPT_FILES[name]
    source = resources.files("bullmq").joinpath("commands", filename).read_text("utf-8")
    num_keys = int(filename.rsplit("-", 1)[1].removesuffix(".lua"))
    sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
    return LuaScript(name, source, sha, num_keys)


async def run_script(
    client: AnyRedis, script: LuaScript, keys: Sequence[str], args: Sequence[Any]
) -> Any:
    """``EVALSHA`` ``script`` with ``keys`` and ``args``; ``EVAL`` on ``NOSCRIPT``."""
    if script.num_keys >= 0 and len(keys) != script.num_keys:  # a bug, caught in tests
        raise ValueError(f"{script.name} takes {script.num_keys} keys, got {len(keys)}")
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.execute_command("EVAL", script.source, len(keys), *keys, *args)


class ScriptLane:
    """Runs scripts on one pipelined connection with hiredis-packed commands.

    Calls made in the same event-loop turn are written together (one ``send``), as
    ioredis' auto-pipelining does for Node BullMQ: with 100 slots finishing jobs, one
    syscall carries dozens of ``moveToFinished`` calls instead of one each. A call made
    while nothing else is outstanding is written at once (one job at a time does not
    wait for the loop's next turn), and a turn's batch is cut every ``BATCH_CUT`` calls
    so that Redis starts on the first calls while the worker is still finishing the
    rest (without the cut, ten slots and Redis took turns: each waited for the other).
    Replies are read in raw chunks and parsed by hiredis; every complete reply in a
    chunk is handed to its caller before the next read. Redis runs scripts one at a
    time anyway, so sharing a connection costs no parallelism; the blocking
    ``BZPOPMIN`` has its own connection.

    The connection itself is made by redis-py from the client's pool settings (URL,
    AUTH, TLS, client name); after its handshake the lane writes to and reads from its
    streams directly. redis-py's per-command path (``send_packed_command`` and
    ``read_response``: a timeout context, a drain and a parser call per reply) cost
    more than the job it carried at one job at a time.

    Failure handling: a connection error fails every call in flight (callers wait on
    the worker's ``Health`` and retry) and the next call opens a new connection. The
    transport is always reading, so a connection closed while idle (``CLIENT KILL``,
    server restart) is replaced before it is used. A watchdog resets the connection when
    replies stop coming for ``timeout_s`` (a dead peer that never sends a FIN).

    Args:
        client: the command client whose pool settings the lane's connection copies.
            Cluster clients are used as they are, through ``execute_command``.
        timeout_s: how long replies may stall before the connection is declared dead.
    """

    BATCH_CUT = 4  # calls of one turn written together before the next write starts

    def __init__(self, client: AnyRedis, *, timeout_s: float = 10.0) -> None:
        self.client = client
        pool = getattr(client, "connection_pool", None)
        self._pool: ConnectionPool | None = pool if isinstance(pool, ConnectionPool) else None
        self._timeout_s = timeout_s
        self._conn: AbstractConnection | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._outbox: list[bytes] = []
        # Every call not yet answered, oldest first; the last len(_outbox) are unwritten.
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._flush_soon: asyncio.Handle | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._replies = 0
        self._closed = False
        self._registered: dict[str, LaneScript] = {}
        self.connects = 0
        self.batches = 0

    def register_script(self, source: str) -> LaneScript:
        """``source`` as a callable script on this lane (one object per source)."""
        script = self._registered.get(source)
        if script is None:
            script = self._registered[source] = LaneScript(self, source)
        return script

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``EVALSHA`` (``EVAL`` on ``NOSCRIPT``) through the pipeline."""
        if self._pool is None:
            return await run_script(self.client, script, keys, args)
        try:
            return await self._call(("EVALSHA", script.sha, len(keys), *keys, *args))
        except NoScriptError:
            return await self._call(("EVAL", script.source, len(keys), *keys, *args))

    def _call(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        if self._closed:
            raise RedisConnectionError("the script lane is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        outbox = self._outbox
        outbox.append(hiredis.pack_command(command))
        self._pending.append(future)
        if self._transport is None:
            if self._connecting is None:
                self._connecting = loop.create_task(self._connect(), name="nlq-lane-connect")
        elif len(self._pending) == 1 or len(outbox) >= self.BATCH_CUT:
            self._flush()  # Redis is idle, or this turn's batch is long enough to start
        elif self._flush_soon is None:
            self._flush_soon = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Write the calls not yet written (synchronously: the transport buffers)."""
        if self._flush_soon is not None:
            self._flush_soon.cancel()
            self._flush_soon = None
        transport = self._transport
        if transport is None or not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        self.batches += 1
        try:
            transport.write(b"".join(batch))
        except Exception as exc:  # a transport already closing: the reader reports it
            self._reset(self._conn, exc)
            return
        self._arm_watchdog()

    async def _connect(self) -> None:
        assert self._pool is not None
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.connect()  # type: ignore[no-untyped-call]  # AUTH, SETNAME, …
            reader = conn._reader  # the streams redis-py connected
            writer = conn._writer
            if (reader is None or writer is None or writer.transport.is_closing()
                    or reader.at_eof() or reader.exception() is not None):
                raise RedisConnectionError("the connection closed while connecting")
        except asyncio.CancelledError:
            self._connecting = None
            await _disconnect(conn)
            raise
        except Exception as exc:
            self._connecting = None
            await _disconnect(conn)
            self._reset(None, exc)
            return
        self._connecting = None
        if self._closed:
            await _disconnect(conn)
            return
        self.connects += 1
        transport = writer.transport
        self._conn, self._transport = conn, transport
        # From here on the transport feeds the lane's parser directly: the replies of a
        # read reach their callers in the same loop turn (a reader task would add one).
        protocol = _LaneProtocol(self, conn, _reply_parser(conn))
        transport.set_protocol(protocol)
        leftover = bytes(getattr(reader, "_buffer", b""))  # read past the handshake
        if leftover:
            protocol.data_received(leftover)
        self._flush()

    def _on_replies(self, parser: hiredis.Reader) -> None:
        pending = self._pending
        while (reply := parser.gets()) is not False:
            self._replies += 1
            if not pending:
                raise RedisConnectionError("reply without a pending call")
            future = pending.popleft()
            if future.done():  # its caller was cancelled; the reply is consumed anyway
                continue
            # An error *reply* (the stream is intact): ResponseError, and the errors
            # redis-py makes connection errors (LOADING, NOAUTH, max clients …).
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _arm_watchdog(self) -> None:
        if self._watchdog is None and self._pending:
            self._watchdog = asyncio.get_running_loop().call_later(
                self._timeout_s, self._check_stuck, self._replies)

    def _check_stuck(self, replies_then: int) -> None:
        self._watchdog = None
        if not self._pending:
            return
        if self._replies == replies_then:
            self._reset(self._conn, RedisTimeoutError(
                f"no reply from Redis for {self._timeout_s:.0f} s"))
            return
        self._arm_watchdog()

    def _reset(self, conn: AbstractConnection | None, exc: BaseException) -> None:
        """Drop ``conn`` and fail every call in flight with ``exc``."""
        if conn is not None and conn is not self._conn:
            return  # an old connection: already reset
        transport, self._conn, self._transport = self._transport, None, None
        if transport is not None:
            transport.abort()  # nothing more in or out of it, from now on
        for timer in (self._flush_soon, self._watchdog):
            if timer is not None:
                timer.cancel()
        self._flush_soon = self._watchdog = None
        pending, self._pending = self._pending, deque()
        self._outbox = []
        if not isinstance(exc, RedisError | OSError):
            exc = RedisConnectionError(f"script lane failed: {exc!r}")
        for future in pending:
            if not future.done():
                future.set_exception(exc)
        if conn is not None:
            asyncio.get_running_loop().create_task(_disconnect(conn))

    async def close(self) -> None:
        """Fail calls in flight and disconnect."""
        self._closed = True
        conn = self._conn
        self._reset(conn, RedisConnectionError("the script lane is closed"))
        task, self._connecting = self._connecting, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if conn is not None:
            await _disconnect(conn)


class _LaneProtocol(asyncio.Protocol):
    """The lane's side of its connection's transport: replies in, loss reported."""

    def __init__(self, lane: ScriptLane, conn: AbstractConnection,
                 parser: hiredis.Reader) -> None:
        self.lane = lane
        self.conn = conn
        self.parser = parser

    def data_received(self, data: bytes) -> None:
        if self.lane._conn is not self.conn:
            return  # a connection the lane dropped: its replies answer nobody now
        self.parser.feed(data)
        try:
            self.lane._on_replies(self.parser)
        except Exception as exc:  # a protocol error, or a reply nobody asked for
            self.lane._reset(self.conn, exc)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lane._reset(self.conn, exc or RedisConnectionError("Redis closed the connection"))


def _reply_parser(conn: AbstractConnection) -> hiredis.Reader:
    """A hiredis reader that decodes as ``conn`` would and makes error replies the
    exceptions redis-py raises for them (``NoScriptError``, ``BusyLoadingError`` …)."""
    encoder = conn.encoder
    kwargs: dict[str, Any] = {"protocolError": InvalidResponse,
                              "replyError": BaseParser.parse_error}
    if encoder.decode_responses:
        kwargs["encoding"] = encoder.encoding
        kwargs["errors"] = encoder.encoding_errors
    return hiredis.Reader(**kwargs)


async def _disconnect(conn: AbstractConnection) -> None:
    with contextlib.suppress(Exception):  # closing a connection we gave up on
        await conn.disconnect(nowait=True)
