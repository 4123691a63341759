"""Redis connections: one factory for every client, server checks, the embedded default.

Rules every client follows:

- Replies are decoded to ``str`` (the ``bullmq`` package expects it).
- Connecting is bounded by ``redis_connect_timeout_s``; a failure becomes
  ``RedisUnavailableError`` carrying the URL with its password masked.
- *Command* connections have a socket timeout (``redis_command_timeout_s``) so a dead
  peer is noticed. *Blocking* connections (``BZPOPMIN`` and friends) have none: redis-py
  8 defaults to a 5 s socket timeout, which would cut every wait longer than that.

- A client's pool is *blocking*: past ``redis_max_connections`` a command waits for a
  free connection, up to ``redis_command_timeout_s``; past that it fails with
  ``PoolExhaustedError`` — this process is overloaded, Redis may be fine.
- Deadlines on Redis calls that must fail fast (readiness, a scrape) are called only
  after the event loop has had a few turns past them (``finished_within``), so a loop
  busy with a burst of requests never makes a Redis that answered look silent.

``resolve_redis_url`` picks the server: ``REDIS_URL`` if set; else whatever answers at
the probe URL (``redis://127.0.0.1:6379``); else a private embedded server
(``embedded.py``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .config import Settings, mask_url
from .embedded import EmbeddedServer, _ping
from .errors import EvictionPolicyError, RedisUnavailableError, RedisVersionError

log = logging.getLogger(__name__)

MIN_REDIS_VERSION = (6, 2, 0)
Purpose = Literal["command", "blocking"]
AnyRedis = aioredis.Redis | RedisCluster

_embedded: dict[str, EmbeddedServer] = {}
T = TypeVar("T")


class PoolExhaustedError(RedisConnectionError):
    """Every connection of a client's pool stayed busy for the whole wait.

    The process has more Redis commands in flight than ``redis_max_connections`` for
    longer than ``redis_command_timeout_s``: it is overloaded, while Redis itself may be
    answering well. A subclass of redis-py's ``ConnectionError``, so the workers back off
    from it as from any connection trouble; the API answers it 503 *overloaded* with
    ``Retry-After`` instead of "Redis is unavailable".
    """


class _WaitingPool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, telling a full pool apart from a failed connection.

    redis-py raises the same ``ConnectionError`` for both; only the full pool comes from
    its own wait timing out (``No connection available.``, caused by a ``TimeoutError``).
    """

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError) and not isinstance(
                    exc, PoolExhaustedError):
                raise PoolExhaustedError(
                    f"all {self.max_connections} Redis connections of this process stayed "
                    f"busy for {self.timeout} s (NLQ_REDIS_MAX_CONNECTIONS, "
                    "NLQ_REDIS_COMMAND_TIMEOUT_S)") from exc
            raise


# Turns of the event loop a deadline waits past its time (and past each step the task
# reports) before calling it. Counted on an idle loop: a PING on an open connection
# needs 3–5 turns (socket → reader → the task); opening a connection (connect, CLIENT
# SETINFO, CLIENT SETNAME) about 26; connecting the manager and checking the server
# (INFO) about 45. On a loop whose turns take 0.3 s, a silent Redis is then reported
# after about 20 s instead of 0.8 s — late, but never wrongly.
GRACE_TURNS = 64


async def finished_within(task: asyncio.Future[T], seconds: float,
                          progress: Callable[[], int] | None = None) -> bool:
    """Wait for ``task`` up to ``seconds``, then ``GRACE_TURNS`` turns of the event loop.

    On a free loop the turns take microseconds: the deadline is ``seconds``. On a loop
    busy with other work (a burst of a thousand requests being parsed) each turn takes
    long, and a reply that arrived in time may not have been read yet when the time is
    up; the turns let it be read before the deadline is called — so a slow loop delays
    the verdict instead of faking an outage. ``progress``, when given, counts the steps
    the task has completed (connected, handshake done …): each new step earns another
    ``GRACE_TURNS``, so work that keeps getting answers is never cut off by a slow loop,
    while a peer that answers nothing is. True if the task finished. The task is left
    running either way; cancel it if it is no longer wanted.
    """
    await asyncio.wait({task}, timeout=seconds)
    seen = progress() if progress is not None else 0
    turns = 0
    while turns < GRACE_TURNS:
        if task.done():
            return True
        await asyncio.sleep(0)  # one turn: the loop polls its sockets and runs what is ready
        turns += 1
        if progress is not None and progress() != seen:
            seen, turns = progress(), 0
    return task.done()


def resolve_redis_url(settings: Settings) -> str:
    """Return the URL to use, starting the embedded server when the rules say so."""
    if settings.redis_url is not None and settings.embedded_redis != "always":
        return settings.redis_url.get_secret_value()
    if settings.embedded_redis == "never":
        return settings.redis_probe_url
    if settings.embedded_redis == "auto" and _probe(settings.redis_probe_url):
        return settings.redis_probe_url
    return start_embedded(settings).url


def start_embedded(settings: Settings) -> EmbeddedServer:
    """Start (or reuse) the embedded server for ``settings.state_dir``."""
    data_dir = settings.state_dir / "redis"
    key = str(data_dir.resolve())
    server = _embedded.get(key)
    if server is None or server.port is None or not _ping(server.port):
        server = EmbeddedServer(data_dir)
        server.start()
        _embedded[key] = server
    return server


def _probe(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.password or not parts.hostname:
        return False
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return False
    return _ping(parts.port or 6379, timeout=0.3)


def _ssl_kwargs(settings: Settings) -> dict[str, Any]:
    tls = settings.redis_tls
    kwargs: dict[str, Any] = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
        "ssl_check_hostname": tls.verify and tls.check_hostname,
    }
    if tls.ca_file:
        kwargs["ssl_ca_certs"] = str(tls.ca_file)
    if tls.cert_file:
        kwargs["ssl_certfile"] = str(tls.cert_file)
    if tls.key_file:
        kwargs["ssl_keyfile"] = str(tls.key_file)
    return kwargs


def create_redis(
    settings: Settings,
    purpose: Purpose = "command",
    *,
    url: str | None = None,
    client_name: str | None = None,
    max_connections: int | None = None,
) -> AnyRedis:
    """Create a Redis client for ``purpose``; nothing is connected until first use."""
    url = url or resolve_redis_url(settings)
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        "socket_timeout": None if purpose == "blocking" else settings.redis_command_timeout_s,
        "socket_keepalive": True,
        "health_check_interval": 0 if purpose == "blocking" else 30,
        # Few, quick retries: callers get a clear error fast; long outages are handled by
        # the workers' own back-off, not by a client stuck retrying.
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    if client_name:
        kwargs["client_name"] = client_name
    if url.startswith("rediss://"):
        kwargs.update(_ssl_kwargs(settings))
    elif url.startswith("unix://"):
        kwargs.pop("socket_keepalive")  # TCP-only option
    if settings.redis_cluster:
        kwargs.pop("health_check_interval")
        cluster = RedisCluster.from_url(url, **kwargs)
        return cluster
    # A blocking pool: past max_connections a command waits for a free connection
    # (redis-py's default pool fails it at once with "Too many connections").
    pool = _WaitingPool.from_url(
        url, max_connections=max_connections or settings.redis_max_connections,
        timeout=settings.redis_command_timeout_s, **kwargs)
    client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool too
    return client


@dataclass(frozen=True)
class ServerInfo:
    """What ``check_server`` found out about the server."""

    url: str  # masked
    version: str
    server: str  # "redis" or "valkey"
    maxmemory_policy: str
    maxmemory: int
    used_memory: int


def parse_version(text: str) -> tuple[int, int, int]:
    """``"7.2.4"`` → ``(7, 2, 4)``; missing parts are 0, suffixes (``-rc1``) ignored."""
    parts: list[int] = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece.split("-")[0] if ch.isdigit())
        parts.append(int(digits or 0))
    parts += [0] * (3 - len(parts))
    return (parts[0], parts[1], parts[2])


async def check_server(client: AnyRedis, settings: Settings, url: str) -> ServerInfo:
    """Check version ≥ 6.2 and the eviction policy. Raises on failure.

    A policy other than ``noeviction`` is a warning, or ``EvictionPolicyError`` when
    ``settings.strict`` is set: evicted job keys would be lost without a trace.
    """
    masked = mask_url(url)
    try:
        info = await asyncio.wait_for(
            client.info(), timeout=settings.redis_connect_timeout_s * 3
        )
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        raise RedisUnavailableError(masked, _describe(exc, url)) from exc
    if info and all(isinstance(v, dict) for v in info.values()):
        # The cluster client answers {node: info}; the first node speaks for all.
        info = cast(dict[str, Any], next(iter(info.values())))
    server = "valkey" if "valkey_version" in info else "redis"
    version = str(info.get("valkey_version") or info.get("redis_version") or "0")
    compat_version = str(info.get("redis_version") or version)
    if parse_version(compat_version) < MIN_REDIS_VERSION:
        raise RedisVersionError(masked, version, ".".join(map(str, MIN_REDIS_VERSION)))
    policy = str(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        if settings.strict:
            raise EvictionPolicyError(masked, policy)
        message = (
            f"Redis at {masked} has maxmemory-policy={policy}: under memory pressure it "
            "may evict job keys. Set it to 'noeviction' for production."
        )
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return ServerInfo(
        url=masked,
        version=version,
        server=server,
        maxmemory_policy=policy,
        maxmemory=int(info.get("maxmemory", 0) or 0),
        used_memory=int(info.get("used_memory", 0) or 0),
    )


async def connect(settings: Settings, *, client_name: str | None = None) -> AnyRedis:
    """Create a command client, check the server and return the client.

    Raises:
        RedisUnavailableError: nothing answers (within the connect timeout).
        RedisVersionError: server older than 6.2.
        EvictionPolicyError: eviction policy unsafe and ``strict`` set.
    """
    url = resolve_redis_url(settings)
    client = create_redis(settings, "command", url=url, client_name=client_name)
    try:
        await check_server(client, settings, url)
    except BaseException:
        await client.aclose()
        raise
    return client


def is_cluster_outage(exc: BaseException) -> bool:
    """Whether a cluster client's error means "the cluster cannot be reached now".

    redis-py's cluster client does not raise ``ConnectionError`` when no node answers:
    it raises ``RedisClusterException`` ("Redis Cluster cannot be connected …"), which
    is not even a ``redis.RedisError``, and ``ClusterDownError`` (a ``ResponseError``)
    while the cluster has slots without a primary. Both pass once the cluster is back.
    """
    if isinstance(exc, ClusterDownError):
        return True
    return isinstance(exc, RedisClusterException) and "cannot be connected" in str(exc)


async def delete_prefix(client: AnyRedis, prefix: str, batch: int = 1000) -> int:
    """Delete every key under ``{prefix}:`` (SCAN + UNLINK in batches); returns how many.

    For throw-away prefixes (tests, benchmarks). It never touches other keys and never
    flushes the database.
    """
    deleted = 0
    keys: list[str] = []
    async for key in client.scan_iter(f"{prefix}:*", count=2 * batch):
        keys.append(key)
        if len(keys) >= batch:
            deleted += int(await client.unlink(*keys))
            keys.clear()
    if keys:
        deleted += int(await client.unlink(*keys))
    return deleted


def _describe(exc: BaseException, url: str | None = None) -> str:
    text = str(exc) or type(exc).__name__
    # redis-py messages may embed the URL; never echo a password back.
    text = mask_url(text) if "://" in text else text
    if isinstance(exc, AuthenticationError):
        # Without a password Redis answers "HELLO must be called with the client already
        # authenticated…", which does not say what to do.
        if url is None:
            hint = "check the username and password in the Redis URL"
        elif _has_password(url):
            hint = "the username or password was refused, or the user is disabled"
        else:
            hint = ("the server requires a password and the URL gives none; use "
                    "redis://user:password@host:port")
        return f"authentication failed: {hint} (server said: {text})"
    if isinstance(exc, NoPermissionError):
        return f"permission denied by the server's ACL: {text}"
    if isinstance(exc, RedisClusterException) and "Cluster mode is not enabled" in text:
        # redis-py says this too when the node refuses CLUSTER SLOTS to an ACL user.
        return (f"{text} (is it a cluster node? an ACL user also needs +cluster|slots "
                "and +command)")
    return text


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False
