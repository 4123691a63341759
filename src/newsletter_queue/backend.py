"""QueueBackend: the Redis connection, the ``bullmq`` queues and the records store.

What the producer (``QueueManager``) and the admin service (``QueueAdmin``) share: one
command client (connected and checked on first use), one probe client for health
pings, one ``bullmq.Queue`` per queue, the records store, and the translation of
redis-py's errors into ours (``redis()``), so that every operation reports an outage,
an overloaded process or a full Redis the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

from bullmq import Queue
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOOMError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .config import Settings, load_settings, mask_url
from .connection import (
    AnyRedis,
    PoolExhaustedError,
    check_server,
    create_redis,
    is_cluster_outage,
    resolve_redis_url,
)
from .engine.keys import QueueKeys
from .enqueue import add_job
from .errors import (
    FieldError,
    JobValidationError,
    OverloadedError,
    QueueNotFoundError,
    RedisOutOfMemoryError,
    RedisUnavailableError,
)
from .job_options import JobOptions, to_bullmq_options
from .services.store import Store
from .snapshots import EnqueuedJob


class QueueBackend:
    """Connections and queues of one ``Settings``; an async context manager."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._url: str | None = None
        self._client: AnyRedis | None = None
        self._queues: dict[str, Queue] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._store: Store | None = None
        self._probe: AnyRedis | None = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The masked URL of the Redis server in use."""
        return mask_url(self._url) if self._url else "(not connected)"

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(self.settings.queues)

    async def connect(self) -> None:
        """Resolve the server (embedded if needed), connect and check it. Idempotent."""
        async with self._lock:
            if self._client is not None:
                return
            url = resolve_redis_url(self.settings)
            client = create_redis(self.settings, "command", url=url)
            try:
                await check_server(client, self.settings, url)
            except BaseException:
                await client.aclose()
                raise
            self._url, self._client, self._closed = url, client, False

    async def client(self) -> AnyRedis:
        """The shared command client (connecting on first use)."""
        if self._client is None:
            await self.connect()
        assert self._client is not None
        return self._client

    async def probe_client(self) -> AnyRedis:
        """A client with one connection of its own to the same server, for health pings.

        A readiness ping on the shared pool would queue behind a burst of commands and
        take the wait for an outage; this one never waits for anybody else.
        """
        await self.client()
        if self._probe is None:
            assert self._url is not None
            self._probe = create_redis(self.settings, "command", url=self._url,
                                       max_connections=1)
        return self._probe

    async def queue(self, name: str) -> Queue:
        """The ``bullmq.Queue`` for ``name``. Raises ``QueueNotFoundError``."""
        cfg = self.settings.queue_config(name)
        existing = self._queues.get(name)
        if existing is not None:
            return existing
        client = await self.client()
        queue = Queue(name, {
            "connection": client,
            "prefix": self.settings.key_prefix,
            "defaultJobOptions": cfg.default_job_options(),
        })
        self._queues[name] = queue
        return queue

    def keys(self, queue: str) -> QueueKeys:
        """BullMQ's keys of ``queue``."""
        return QueueKeys(self.settings.key_prefix, queue)

    def key(self, queue: str, suffix: str) -> str:
        """A BullMQ key of ``queue``: ``{prefix}:{queue}:{suffix}``."""
        return self.keys(queue).key(suffix)

    def check_queue(self, name: str) -> str:
        """``name`` if it is a configured queue. Raises ``QueueNotFoundError``."""
        if name not in self.settings.queues:
            raise QueueNotFoundError(name, self.settings.queues)
        return name

    async def close(self) -> None:
        """Close the Redis connection (and the store, if opened). Reusable afterwards."""
        client, self._client = self._client, None
        probe, self._probe = self._probe, None
        store, self._store = self._store, None
        self._queues.clear()
        self._closed = True
        if client is not None:
            await client.aclose()
        if probe is not None:
            await probe.aclose()
        if store is not None:
            await store.close()

    async def store(self) -> Store:
        """The records store (``DATABASE_URL`` or the SQLite file), opened on first use."""
        if self._store is None:
            store = Store.from_settings(self.settings)
            await store.init()
            self._store = store
        return self._store

    @contextlib.asynccontextmanager
    async def redis(self) -> AsyncIterator[AnyRedis]:
        """Yield the client; translate connection and OOM errors into ours."""
        client = await self.client()
        try:
            yield client
        except PoolExhaustedError as exc:
            raise OverloadedError(str(exc)) from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise RedisUnavailableError(self.url, str(exc) or type(exc).__name__) from exc
        except Exception as exc:
            if is_cluster_outage(exc):
                raise RedisUnavailableError(self.url, str(exc)) from exc
            # redis-py 8 raises OutOfMemoryError with the "OOM" code stripped; older
            # versions (and errors inside scripts) keep it in the message.
            if isinstance(exc, RedisOOMError) or (
                    isinstance(exc, ResponseError) and "OOM command not allowed" in str(exc)):
                raise RedisOutOfMemoryError(self.url, str(exc)) from exc
            raise

    async def add_job(self, queue_name: str, name: str, wire: dict[str, Any],
                      opts: JobOptions | None) -> EnqueuedJob:
        """Add one job whose data the caller validated (the producers), or that was valid
        when first enqueued (a dead letter replayed). Checks the name and ``opts``."""
        self.check_queue(queue_name)
        if not isinstance(name, str) or not name or len(name) > 200:
            raise JobValidationError("job", [FieldError("name", "must be 1..200 characters")])
        bull_opts = to_bullmq_options(opts)
        async with self.redis() as client:
            queue = await self.queue(queue_name)
            job, created = await add_job(client, queue, name, wire, bull_opts, url=self.url)
        return EnqueuedJob(str(job.id), name, str(queue_name), wire, dict(job.opts), created)
