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
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
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
    num_keys: int


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
    if len(keys) != script.num_keys:  # a programming error, caught in tests
        raise ValueError(f"{script.name} takes {script.num_keys} keys, got {len(keys)}")
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.execute_command("EVAL", script.source, len(keys), *keys, *args)


class ScriptLane:
    """Runs scripts on one pipelined connection with hiredis-packed commands.

    Calls made in the same event-loop turn are written together (one ``send``), and a
    reader task hands replies to callers in order — what ioredis' auto-pipelining does
    for Node BullMQ. With 100 slots finishing jobs, one syscall carries dozens of
    ``moveToFinished`` calls instead of one each. Redis runs scripts one at a time
    anyway, so sharing a connection costs no parallelism; the blocking ``BZPOPMIN`` has
    its own connection.

    Failure handling: a connection error fails every call in flight (callers wait on
    the worker's ``Health`` and retry) and the next call opens a new connection. The
    reader is always reading, so a connection closed while idle (``CLIENT KILL``, server
    restart) is replaced before it is used. A watchdog resets the connection when
    replies stop coming for ``timeout_s`` (a dead peer that never sends a FIN).

    Args:
        client: the command client whose pool settings (URL, auth, TLS, client name)
            the lane's connection copies. Cluster clients are used as they are,
            through ``execute_command``.
        timeout_s: how long replies may stall before the connection is declared dead.
    """

    def __init__(self, client: AnyRedis, *, timeout_s: float = 10.0) -> None:
        self.client = client
        pool = getattr(client, "connection_pool", None)
        self._pool: ConnectionPool | None = pool if isinstance(pool, ConnectionPool) else None
        self._timeout_s = timeout_s
        self._conn: AbstractConnection | None = None
        self._outbox: list[bytes] = []
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._replies = 0
        self._closed = False
        self.connects = 0
        self.batches = 0

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
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._outbox.append(hiredis.pack_command(command))
        self._pending.append(future)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_forever(), name="nlq-lane-writer")
        self._wake.set()
        return future

    async def _write_forever(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            if not self._outbox:
                continue
            conn: AbstractConnection | None = None
            try:
                conn = self._conn or await self._connect()
                batch, self._outbox = self._outbox, []
                self.batches += 1
                await conn.send_packed_command(batch, check_health=False)
                self._arm_watchdog()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._reset(conn, exc)

    async def _connect(self) -> AbstractConnection:
        assert self._pool is not None
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.connect()  # type: ignore[no-untyped-call]  # AUTH, SETNAME, …
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        # From here on the watchdog bounds stalls; a per-write timeout would cost a task
        # per batch (asyncio.wait_for) for nothing.
        conn.socket_timeout = None
        self.connects += 1
        self._conn = conn
        self._reader = asyncio.get_running_loop().create_task(
            self._read_forever(conn), name="nlq-lane-reader")
        return conn

    async def _read_forever(self, conn: AbstractConnection) -> None:
        try:
            while True:
                try:
                    reply: Any = await conn.read_response(timeout=math.inf)
                    error: BaseException | None = None
                except ResponseError as exc:  # an error *reply*: the stream is intact
                    reply, error = None, exc
                self._replies += 1
                if not self._pending:
                    raise RedisConnectionError("reply without a pending call")
                future = self._pending.popleft()
                if future.done():  # its caller was cancelled; the reply is consumed anyway
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._reset(conn, exc)

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
        self._conn = None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
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
        for task in (self._writer, self._reader):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._writer = self._reader = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if conn is not None:
            await _disconnect(conn)


async def _disconnect(conn: AbstractConnection) -> None:
    with contextlib.suppress(Exception):  # closing a connection we gave up on
        await conn.disconnect(nowait=True)
