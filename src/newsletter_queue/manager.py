"""QueueManager: enqueue email, analytics and AI jobs and administer the queues.

Producer and admin operations go through the ``bullmq`` package's ``Queue`` (BullMQ's
own Lua scripts), so every job is stored exactly as Node BullMQ would store it and can
be processed or displayed by Node tools too. Reads that ``bullmq`` does slowly or
without order (job lists) are done directly on BullMQ's keys.

Use it as an async context manager, or the lazily created module-level
``newsletter_queue.queue_manager`` (built from the environment on first use)::

    async with QueueManager(load_settings()) as manager:
        await manager.schedule_batch_email_sending("c-1", "t-1", recipients)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypedDict, cast

from bullmq import Job as BullJob
from bullmq import Queue
from pydantic import TypeAdapter, ValidationError
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOOMError
from redis.exceptions import ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .campaigns import CampaignLifecycle, plan_campaign
from .config import Settings, load_settings, mask_url
from .connection import (
    AnyRedis,
    PoolExhaustedError,
    check_server,
    create_redis,
    is_cluster_outage,
    resolve_redis_url,
)
from .errors import (
    FieldError,
    JobNotFoundError,
    JobValidationError,
    OverloadedError,
    QueueNotFoundError,
    RedisOutOfMemoryError,
    RedisUnavailableError,
)
from .jobs import (
    AIJobData,
    AnalyticsJobData,
    EmailJobData,
    Recipient,
    TrackingEvent,
    field_errors,
    validate_job,
)
from .queues import (
    ANALYTICS_DAILY_AGGREGATION,
    EMAIL_BULK_PRIORITY,
    EMAIL_SEND_BATCH,
    QueueName,
)
from .records import EnqueuedJob, HealthCheck, JobInfo, QueueStats
from .services.store import DeadLetterRecord, EventRecord, Store

MAX_PRIORITY = 2_097_152
_ADD_ATTEMPTS = 5  # watched adds retried after a dropped connection (QueueManager._add_once)
CleanState = Literal["completed", "failed", "delayed", "waiting", "active", "paused",
                     "prioritized"]
_EVENTS = TypeAdapter(list[TrackingEvent])
_COUNT_TYPES = ("waiting", "prioritized", "active", "delayed", "completed", "failed",
                "paused", "waiting-children")


class JobOptions(TypedDict, total=False):
    """Per-job options (snake_case; translated to BullMQ's camelCase).

    ``delay`` in ms; ``priority`` 1 (highest) … 2,097,152; ``job_id`` makes the call
    idempotent (adding an existing id adds nothing); ``backoff`` is a delay in ms or
    ``{"type": "fixed"|"exponential", "delay": ms, "jitter": 0..1}``.
    """

    job_id: str
    delay: int
    priority: int
    attempts: int
    backoff: int | dict[str, Any]
    lifo: bool
    remove_on_complete: bool | int | dict[str, int]
    remove_on_fail: bool | int | dict[str, int]


_OPTION_NAMES = {
    "job_id": "jobId",
    "delay": "delay",
    "priority": "priority",
    "attempts": "attempts",
    "backoff": "backoff",
    "lifo": "lifo",
    "remove_on_complete": "removeOnComplete",
    "remove_on_fail": "removeOnFail",
}


def to_bullmq_options(opts: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``JobOptions`` and return BullMQ's camelCase job options."""
    if not opts:
        return {}
    problems: list[FieldError] = []
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if key not in _OPTION_NAMES:
            problems.append(FieldError(f"opts.{key}", f"unknown option; known: "
                                       f"{', '.join(_OPTION_NAMES)}"))
            continue
        problem = _OPTION_CHECKS[key](value)
        if problem:
            problems.append(FieldError(f"opts.{key}", problem))
        out[_OPTION_NAMES[key]] = value
    if problems:
        raise JobValidationError("JobOptions", problems)
    return out


def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    """An integer (not a bool) in ``low..high``."""
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _valid_job_id(value: Any) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= 200 and ":" not in value
            and not value.isdigit() and value.isprintable())


# Upper bounds of the numeric options: past them a number no longer fits the scripts'
# msgpack integers and Lua doubles (a 500 before), and means nothing anyway.
MAX_DELAY_MS = 10 * 365 * 24 * 3600 * 1000  # ten years, for delay and backoff delays
MAX_COUNT = 2**31 - 1  # attempts, and the counts and ages of removeOnComplete/-Fail


def _check_backoff(value: Any) -> str | None:
    message = ("must be a delay in ms (integer 0..{MAX_DELAY_MS}) or {type, delay?, jitter?} "
               "with a non-empty type, an integer delay 0..{MAX_DELAY_MS} and a jitter in 0..1"
               ).replace("{MAX_DELAY_MS}", str(MAX_DELAY_MS))
    if _is_int(value, 0, MAX_DELAY_MS):
        return None
    if not isinstance(value, Mapping) or set(value) - {"type", "delay", "jitter"}:
        return message
    kind, delay, jitter = value.get("type"), value.get("delay", 0), value.get("jitter", 0)
    jitter_ok = (isinstance(jitter, int | float) and not isinstance(jitter, bool)
                 and 0 <= jitter <= 1)
    if not (isinstance(kind, str) and kind and _is_int(delay, 0, MAX_DELAY_MS) and jitter_ok):
        return message
    return None


def _check_keep(value: Any) -> str | None:
    """removeOnComplete/removeOnFail: a bool, a count, or {age?, count?, limit?}."""
    if isinstance(value, bool) or _is_int(value, 0, MAX_COUNT):
        return None
    if (isinstance(value, Mapping) and not set(value) - {"age", "count", "limit"}
            and all(_is_int(v, 0, MAX_COUNT) for v in value.values())):
        return None
    return (f"must be true/false, a number of jobs to keep (0..{MAX_COUNT}) or "
            f"{{age?, count?, limit?}} with integers 0..{MAX_COUNT} (age in seconds)")


_OPTION_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "job_id": lambda v: None if _valid_job_id(v) else
    "must be a non-numeric string without ':' (max 200 chars)",
    "delay": lambda v: None if _is_int(v, 0, MAX_DELAY_MS) else
    f"must be an integer 0..{MAX_DELAY_MS} (ms, at most ten years)",
    "priority": lambda v: None if _is_int(v, 0, MAX_PRIORITY) else
    f"must be an integer 0..{MAX_PRIORITY}",
    "attempts": lambda v: None if _is_int(v, 1, MAX_COUNT) else
    f"must be an integer 1..{MAX_COUNT}",
    "backoff": _check_backoff,
    "lifo": lambda v: None if isinstance(v, bool) else "must be true or false",
    "remove_on_complete": _check_keep,
    "remove_on_fail": _check_keep,
}


# BullMQ's clean script hands both to Redis commands as integers, through Lua's
# doubles: past these a number reaches Redis in exponent form and the script fails.
MAX_CLEAN_LIMIT = 2**31 - 1
MAX_CLEAN_GRACE_MS = 10**13  # about 317 years


def daily_scheduler_id(tenant_id: str) -> str:
    return f"daily-aggregation-{tenant_id}"


class QueueManager:
    """High-level interface for scheduling jobs and managing the three queues."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._url: str | None = None
        self._client: AnyRedis | None = None
        self._queues: dict[str, Queue] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._store: Store | None = None
        self._probe: AnyRedis | None = None

    # --- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> QueueManager:
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

    def key(self, queue: str, suffix: str) -> str:
        """A BullMQ key of ``queue``: ``{prefix}:{queue}:{suffix}``."""
        return f"{self.settings.key_prefix}:{queue}:{suffix}"

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
    async def _redis(self) -> AsyncIterator[AnyRedis]:
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

    def _check_queue(self, name: str) -> str:
        if name not in self.settings.queues:
            raise QueueNotFoundError(name, self.settings.queues)
        return name

    # --- producers ---------------------------------------------------------------------
    async def _add(
        self, queue_name: str, name: str, wire: dict[str, Any], opts: JobOptions | None
    ) -> EnqueuedJob:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise JobValidationError("job", [FieldError("name", "must be 1..200 characters")])
        bull_opts = to_bullmq_options(opts)
        async with self._redis() as client:
            queue = await self.queue(queue_name)
            if "jobId" not in bull_opts:
                job, created = await queue.add(name, wire, bull_opts), True
            elif isinstance(client, RedisCluster):
                # No WATCH through the cluster client: exact unless two adds of one id
                # race, when both may say created (Redis still holds one job).
                key = self.key(queue_name, str(bull_opts["jobId"]))
                created = not await client.exists(key)
                job = await queue.add(name, wire, bull_opts)
            else:
                job, created = await self._add_once(client, queue, name, wire, bull_opts)
        return EnqueuedJob(str(job.id), name, str(queue_name), wire, dict(job.opts), created)

    async def _add_once(self, client: AnyRedis, queue: Queue, name: str,
                        wire: dict[str, Any], bull_opts: dict[str, Any]
                        ) -> tuple[BullJob, bool]:
        """Add a job with a given id, telling whether this call created it.

        BullMQ's add script silently returns the id of an existing job. Watching the job
        key around it (WATCH, EXISTS, MULTI, add, EXEC) makes the answer exact even for
        simultaneous calls: the one whose EXEC lands first created the job; for every
        other the key changed or already existed, so it reports ``created=False``.

        redis-py also raises ``WatchError`` when the connection drops inside the
        transaction, so a ``WatchError`` only means "someone else created it" once Redis
        confirms the job exists; otherwise the add is tried again (a Redis that stays
        down fails the ``EXISTS`` with a connection error, which the caller reports).
        If the drop cost only the reply of an EXEC that ran, the job exists and this call
        says ``created=False`` for a job it did create: stored once either way.
        """
        job_id = str(bull_opts["jobId"])
        key = self.key(queue.name, job_id)
        for _ in range(_ADD_ATTEMPTS):
            job = BullJob(queue, name, wire, {**queue.jobsOpts, **bull_opts})
            async with client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    if await pipe.exists(key):
                        job.id = job_id
                        return job, False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    await queue.backend.scripts.addJob(job, pipe)
                    (result,) = await pipe.execute()
                except WatchError:
                    if await client.exists(key):
                        job.id = job_id
                        return job, False
                    continue
            if isinstance(result, int) and result < 0:
                raise queue.backend.scripts.finishedErrors(
                    {"code": result, "parentKey": None, "command": "addJob"})
            job.id = str(result)
            return job, True
        raise RedisUnavailableError(self.url, f"could not add job {job_id}: the connection "
                                              f"dropped {_ADD_ATTEMPTS} times")

    async def schedule_email_job(
        self,
        name: str,
        data: EmailJobData | Mapping[str, Any],
        opts: JobOptions | None = None,
    ) -> EnqueuedJob:
        """Enqueue one email job (a batch, or a transactional message with a priority)."""
        model = validate_job(EmailJobData, data, self.settings.job_limits)
        return await self._add(QueueName.EMAIL, name, model.to_wire(), opts)

    async def schedule_analytics_job(
        self,
        name: str,
        data: AnalyticsJobData | Mapping[str, Any],
        opts: JobOptions | None = None,
    ) -> EnqueuedJob:
        """Enqueue an analytics job (``campaign-complete`` or ``daily-aggregation``)."""
        model = validate_job(AnalyticsJobData, data, self.settings.job_limits)
        return await self._add(QueueName.ANALYTICS, name, model.to_wire(), opts)

    async def schedule_ai_job(
        self,
        name: str,
        data: AIJobData | Mapping[str, Any],
        opts: JobOptions | None = None,
    ) -> EnqueuedJob:
        """Enqueue an AI job (content generation, subject optimisation, insights)."""
        model = validate_job(AIJobData, data, self.settings.job_limits)
        return await self._add(QueueName.AI, name, model.to_wire(), opts)

    async def schedule_batch_email_sending(
        self,
        campaign_id: str,
        tenant_id: str,
        recipients: Iterable[Recipient | Mapping[str, Any]],
        batch_size: int | None = None,
        *,
        name: str = EMAIL_SEND_BATCH,
        priority: int | None = None,
    ) -> list[EnqueuedJob]:
        """Split a campaign's recipients into batch jobs added with one bulk call.

        Batches get ``EMAIL_BULK_PRIORITY`` unless ``priority`` is given, so that
        transactional mail scheduled with ``schedule_email_job`` overtakes a running
        campaign.

        Job ids are deterministic per (tenant, campaign, batch index), so calling this
        twice for the same campaign enqueues nothing new while the first jobs exist.
        (The email processor's per-campaign ledger additionally guarantees one message
        per recipient even if a finished batch was already removed and is re-added.)
        """
        plan = plan_campaign(self.settings, campaign_id, tenant_id, recipients, batch_size)
        jobs = plan.jobs(
            to_bullmq_options({"priority": EMAIL_BULK_PRIORITY if priority is None else priority}),
            self.settings.job_limits.max_payload_bytes, name)
        async with self._redis() as client:
            # The total is stored first, so no batch can finish before it is known.
            await CampaignLifecycle(client, self.settings.key_prefix).planned(plan)
            queue = await self.queue(QueueName.EMAIL)
            if isinstance(client, RedisCluster):
                added = await _add_bulk_cluster(client, queue, jobs)
            else:
                added = await queue.addBulk(jobs)
        return [
            EnqueuedJob(str(job.id), name, str(QueueName.EMAIL), spec["data"], dict(job.opts))
            for job, spec in zip(added, jobs, strict=True)
        ]

    async def schedule_recurring_analytics(
        self,
        tenant_id: str,
        *,
        cron: str | None = None,
        every_ms: int | None = None,
        tz: str = "UTC",
    ) -> str:
        """Schedule the tenant's ``daily-aggregation`` (a BullMQ job scheduler).

        Daily at 02:00 in ``tz`` by default; pass ``cron`` or ``every_ms`` to change it.
        Idempotent per tenant: calling again updates the one scheduler. Returns its id.
        """
        if cron and every_ms:
            raise JobValidationError("RecurringAnalytics", [
                FieldError("cron", "give cron or every_ms, not both")])
        if every_ms is not None and every_ms < 1000:
            raise JobValidationError("RecurringAnalytics", [
                FieldError("every_ms", "must be at least 1000 ms")])
        data = validate_job(AnalyticsJobData, {
            "campaignId": "all", "tenantId": tenant_id, "eventType": ANALYTICS_DAILY_AGGREGATION,
        }, self.settings.job_limits)
        repeat: dict[str, Any] = {"every": every_ms} if every_ms else {
            "pattern": cron or "0 2 * * *", "tz": tz}
        scheduler_id = daily_scheduler_id(tenant_id)
        async with self._redis():
            queue = await self.queue(QueueName.ANALYTICS)
            try:
                await queue.upsertJobScheduler(
                    scheduler_id, repeat, ANALYTICS_DAILY_AGGREGATION, data.to_wire(), {})
            except (ValueError, KeyError) as exc:
                raise JobValidationError("RecurringAnalytics", [
                    FieldError("cron" if cron else "every_ms", str(exc))]) from exc
        return scheduler_id

    async def remove_recurring_analytics(self, tenant_id: str) -> bool:
        """Remove the tenant's scheduler. Returns whether one existed."""
        async with self._redis():
            queue = await self.queue(QueueName.ANALYTICS)
            return bool(await queue.removeJobScheduler(daily_scheduler_id(tenant_id)) == 0)

    # --- records ---------------------------------------------------------------------
    async def record_events(
        self, events: Iterable[TrackingEvent | Mapping[str, Any]]
    ) -> int:
        """Record recipients' events (opens, clicks …) in one batched insert.

        Every event is validated first; one bad event rejects the batch with
        ``JobValidationError`` naming it (``[3].type``). Returns how many were stored.
        """
        rows = [e.to_wire() if isinstance(e, TrackingEvent) else e for e in events]
        try:
            parsed = _EVENTS.validate_python(rows)
        except ValidationError as exc:
            raise JobValidationError("TrackingEvent", field_errors(exc, TrackingEvent)
                                     ) from None
        store = await self.store()
        return await store.record_events([
            EventRecord(tenant_id=e.tenant_id, campaign_id=e.campaign_id,
                        recipient=e.recipient, type=e.type, occurred_at=e.occurred_at,
                        url=e.url) for e in parsed])

    async def list_dead_letters(
        self, limit: int = 50, queue: str | None = None, *, include_replayed: bool = False
    ) -> list[DeadLetterRecord]:
        """Jobs that failed for good (newest first), kept for inspection and replay."""
        if queue is not None:
            self._check_queue(queue)
        store = await self.store()
        return await store.list_dead_letters(limit, queue, include_replayed)

    async def replay_dead_letter(self, dead_letter_id: int) -> EnqueuedJob:
        """Enqueue a fresh job with the dead letter's queue, name and data; mark it replayed.

        Raises:
            JobNotFoundError: no such dead letter, or it was replayed already.
        """
        store = await self.store()
        letter = await store.get_dead_letter(dead_letter_id)
        if letter is None or letter.replayed_at is not None:
            raise JobNotFoundError("dead-letters", str(dead_letter_id))
        self._check_queue(letter.queue)
        data = letter.data if isinstance(letter.data, dict) else {"value": letter.data}
        job = await self._add(letter.queue, letter.job_name, data, None)
        await store.mark_dead_letter_replayed(dead_letter_id, job.id)
        return job

    # --- queue administration ------------------------------------------------------------
    async def get_queue_stats(self, queue: str) -> QueueStats:
        """Counts by state and the paused flag, read in one round trip."""
        self._check_queue(queue)
        async with self._redis() as client:
            pipe = client.pipeline(transaction=False)
            pipe.llen(self.key(queue, "wait"))
            pipe.zcard(self.key(queue, "prioritized"))
            pipe.llen(self.key(queue, "active"))
            pipe.zcard(self.key(queue, "delayed"))
            pipe.zcard(self.key(queue, "completed"))
            pipe.zcard(self.key(queue, "failed"))
            pipe.llen(self.key(queue, "paused"))
            pipe.zcard(self.key(queue, "waiting-children"))
            pipe.hexists(self.key(queue, "meta"), "paused")
            res = await pipe.execute()
        w, pr, ac, de, co, fa, pa, wc = (int(x) for x in res[:8])
        return QueueStats(queue, waiting=w, prioritized=pr, active=ac, delayed=de,
                          completed=co, failed=fa, paused=pa, waiting_children=wc,
                          is_paused=bool(res[8]))

    async def get_all_queue_stats(self) -> dict[str, QueueStats]:
        """``get_queue_stats`` for every queue."""
        results = await asyncio.gather(*(self.get_queue_stats(q) for q in self.queue_names))
        return dict(zip(self.queue_names, results, strict=True))

    async def get_jobs(
        self, queue: str, state: str, start: int = 0, end: int = 9, *, newest_first: bool = True
    ) -> list[JobInfo]:
        """Jobs of ``queue`` in ``state`` (a page by index range), with their data."""
        self._check_queue(queue)
        if state not in _COUNT_TYPES:
            raise JobValidationError("query", [FieldError(
                "state", f"unknown state {state!r}; known: {', '.join(_COUNT_TYPES)}")])
        async with self._redis() as client:
            key = self.key(queue, "wait" if state == "waiting" else state)
            ids: list[str]
            if state in ("waiting", "active", "paused"):
                # Lists: LPUSH adds at the head, so the head is the newest.
                if newest_first:
                    ids = cast(list[str], await client.lrange(key, start, end))
                else:
                    ids = cast(list[str], await client.lrange(key, -end - 1, -start - 1))[::-1]
            elif newest_first:
                ids = cast(list[str], await client.zrevrange(key, start, end))
            else:
                ids = cast(list[str], await client.zrange(key, start, end))
            return await self._load_jobs(client, queue, ids, state)

    async def _load_jobs(
        self, client: AnyRedis, queue: str, ids: Sequence[str], state: str | None
    ) -> list[JobInfo]:
        if not ids:
            return []
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.key(queue, job_id))
        hashes = await pipe.execute()
        return [JobInfo.from_hash(queue, job_id, raw, state)
                for job_id, raw in zip(ids, hashes, strict=True) if raw]

    async def get_job(self, queue: str, job_id: str) -> JobInfo | None:
        """One job by id, or ``None``."""
        self._check_queue(queue)
        async with self._redis() as client:
            raw: dict[str, str] = await client.hgetall(self.key(queue, job_id))  # type: ignore[assignment]
            if not raw:
                return None
            q = await self.queue(queue)
            state = await q.getJobState(job_id)
        return JobInfo.from_hash(queue, job_id, raw, str(state))

    async def get_failed_jobs(self, queue: str, limit: int = 10) -> list[JobInfo]:
        """The most recently failed jobs of ``queue``, newest first."""
        if limit < 1:
            return []
        return await self.get_jobs(queue, "failed", 0, limit - 1)

    async def health_check(self) -> HealthCheck:
        """Ping Redis and read every queue's stats. Never raises for Redis being down."""
        started = time.perf_counter()
        try:
            async with self._redis() as client:
                await asyncio.wait_for(client.ping(), timeout=self.settings.redis_connect_timeout_s)
                latency = (time.perf_counter() - started) * 1000
                info = await client.info("server")
            stats = await self.get_all_queue_stats()
        except Exception as exc:
            return HealthCheck(False, False, None, None, self.url, {}, error=str(exc))
        version = str(info.get("valkey_version") or info.get("redis_version") or "?")
        return HealthCheck(True, True, round(latency, 3), version, self.url, stats)

    async def clean_queue(
        self,
        queue: str,
        grace_ms: int = 0,
        state: CleanState = "completed",
        limit: int = 0,
    ) -> list[str]:
        """Remove jobs in ``state`` older than ``grace_ms``; ``limit`` 0 means all.

        Returns the removed job ids.
        """
        self._check_queue(queue)
        allowed = CleanState.__args__  # type: ignore[attr-defined]
        if state not in allowed:
            raise JobValidationError("clean", [FieldError(
                "state", f"unknown state {state!r}; known: {', '.join(allowed)}")])
        bad = [FieldError(name, f"must be 0 … {top}") for name, value, top in (
            ("grace_ms", grace_ms, MAX_CLEAN_GRACE_MS), ("limit", limit, MAX_CLEAN_LIMIT))
            if not 0 <= value <= top]
        if bad:
            raise JobValidationError("clean", bad)
        async with self._redis():
            q = await self.queue(queue)
            removed = await q.clean(grace_ms, limit, "wait" if state == "waiting" else state)
        return [str(x) for x in removed or []]

    async def pause_queue(self, queue: str) -> None:
        """Pause processing of ``queue`` for every worker (jobs can still be added)."""
        self._check_queue(queue)
        async with self._redis():
            await (await self.queue(queue)).pause()

    async def resume_queue(self, queue: str) -> None:
        """Resume a paused queue."""
        self._check_queue(queue)
        async with self._redis():
            await (await self.queue(queue)).resume()

    async def is_paused(self, queue: str) -> bool:
        self._check_queue(queue)
        async with self._redis() as client:
            return bool(await client.hexists(self.key(queue, "meta"), "paused"))

    async def retry_failed(self, queue: str) -> int:
        """Move every failed job of ``queue`` back to waiting. Returns how many."""
        self._check_queue(queue)
        async with self._redis() as client:
            before = int(await client.zcard(self.key(queue, "failed")))
            if before:
                q = await self.queue(queue)
                await q.retryJobs({"state": "failed", "count": 1000,
                                   # +1: bullmq rounds finishedOn to the nearest ms
                                   "timestamp": int(time.time() * 1000) + 1})
            after = int(await client.zcard(self.key(queue, "failed")))
        return max(before - after, 0)


class _ClusterScriptQueue:
    """What ``bullmq``'s script objects need of a pipeline, on a cluster transaction.

    redis-py's ``ClusterPipeline`` refuses ``evalsha()`` (it cannot know in general
    that a script's keys share a slot), but every key of one of our queues carries the
    prefix's hash tag, so the whole bulk add is one slot and ``MULTI`` works: the
    commands are queued through ``execute_command`` instead.
    """

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any:
        self._pipe.execute_command("EVALSHA", sha, numkeys, *args)
        return self


async def _add_bulk_cluster(
    client: RedisCluster, queue: Queue, jobs: list[dict[str, Any]]
) -> list[BullJob]:
    """``Queue.addBulk`` for a cluster client: one ``MULTI``/``EXEC`` on the queue's node."""
    instances = []
    for spec in jobs:
        opts = {**queue.jobsOpts, **(spec.get("opts") or {})}
        instances.append(BullJob(queue=queue, name=spec["name"], data=spec["data"],
                                 opts=opts, job_id=opts.get("jobId")))
    scripts = queue.backend.scripts
    # EVALSHA in a transaction cannot fall back to EVAL: load the scripts first
    # (SCRIPT LOAD goes to every primary).
    for name in ("addStandardJob", "addPrioritizedJob", "addDelayedJob"):
        await client.script_load(scripts.commands[name].script)
    async with client.pipeline(transaction=True) as pipe:
        proxy = _ClusterScriptQueue(pipe)
        for job in instances:
            await scripts.addJob(job, proxy)
        ids = await pipe.execute()
    for job, job_id in zip(instances, ids, strict=True):
        if isinstance(job_id, int) and job_id < 0:
            raise scripts.finishedErrors({"code": job_id, "parentKey": job.parentKey,
                                          "command": "addJob"})
        job.id = str(job_id)
    return instances
