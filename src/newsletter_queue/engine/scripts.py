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
- ``ScriptLane`` runs them on redis-py connections taken from the client's pool
  settings (URL, auth, TLS, client name, socket timeout) but packed by hiredis in C and
  kept in a plain free list. Measured here, redis-py's ``execute_command`` spends
  ~50 µs per script call packing 20 arguments in Python and doing pool bookkeeping —
  more than the script itself. One connection per in-flight call, so a slow call never
  holds up another (no head-of-line blocking). Cluster clients use ``execute_command``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
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
    """Runs scripts on dedicated connections with hiredis-packed commands.

    Args:
        client: the command client whose pool settings (URL, auth, TLS, client name,
            socket timeout) the lane's connections copy. Cluster clients are used as
            they are, through ``execute_command``.
    """

    def __init__(self, client: AnyRedis) -> None:
        self.client = client
        pool = getattr(client, "connection_pool", None)
        self._pool: ConnectionPool | None = pool if isinstance(pool, ConnectionPool) else None
        self._idle: list[AbstractConnection] = []
        self._all: set[AbstractConnection] = set()

    @property
    def connections(self) -> int:
        return len(self._all)

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``EVALSHA`` (``EVAL`` on ``NOSCRIPT``) on an idle lane connection."""
        if self._pool is None:
            return await run_script(self.client, script, keys, args)
        try:
            return await self._call(("EVALSHA", script.sha, len(keys), *keys, *args))
        except NoScriptError:
            return await self._call(("EVAL", script.source, len(keys), *keys, *args))

    async def _call(self, command: tuple[Any, ...]) -> Any:
        packed = hiredis.pack_command(command)
        for attempt in (1, 2):
            conn = self._acquire()
            try:
                await conn.send_packed_command(packed)
                reply = await conn.read_response()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                # A killed or stale connection. Its idle siblings most likely died with it
                # (server restart, CLIENT KILL): drop them all and try once more on a new
                # connection, as redis-py's own retry would; a second failure is raised.
                await self._discard(conn)
                idle, self._idle = self._idle, []
                for other in idle:
                    await self._discard(other)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                await self._discard(conn)  # cancelled mid-reply: the stream is unusable
                raise
            self._idle.append(conn)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _acquire(self) -> AbstractConnection:
        if self._idle:
            return self._idle.pop()
        assert self._pool is not None
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        self._all.add(conn)
        return conn

    async def _discard(self, conn: AbstractConnection) -> None:
        self._all.discard(conn)
        with contextlib.suppress(Exception):  # already broken: nothing left to release
            await conn.disconnect(nowait=True)

    async def close(self) -> None:
        """Disconnect every lane connection."""
        conns, self._all, self._idle = list(self._all), set(), []
        for conn in conns:
            with contextlib.suppress(Exception):  # closing: a failed disconnect is moot
                await conn.disconnect()
