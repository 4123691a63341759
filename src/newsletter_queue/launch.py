"""What the long-running commands launch: worker-process services, ``worker``, ``up``.

``WorkerServices`` opens everything the processors use in one process — the Redis
client, the records store, the SMTP pool (or the dev sink), the AI provider, the circuit
breakers — and builds the ``ProcessorRegistry`` that maps job names to processors. It
also provides the worker hooks that keep the books: failed-for-good jobs become dead
letters, a campaign batch that fails for good still counts towards completion.

``run_worker_process`` (``newsletter-queue worker``) and ``run_system``
(``newsletter-queue up``: Redis, embedded if needed, the dev SMTP sink — which hands
mail to the bounce domain to the ``inbound-message`` job —, the database, every queue's
workers and the dev API with its dashboard, in one process) each build
one ``System`` (``system.py``), which handles the signals and stops it all in order.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial

from .campaigns import CampaignLifecycle, enqueue_campaign_complete
from .campaigns.manage import wake_batch
from .config import DEV_BOUNCE_DOMAIN, Settings
from .connection import AnyRedis, connect
from .engine import Job, Worker
from .keyspace import AI_BREAKER, emails_counter_key
from .manager import QueueManager
from .monitor import MonitorRecorder
from .processors.ai import build_ai_processors
from .processors.analytics import build_analytics_processors
from .processors.email import Delivery, EmailProcessor
from .processors.inbound import build_inbound_processors
from .queues import EMAIL_SEND_BATCH, QueueName
from .registry import ProcessorRegistry
from .services.ai import AIProvider, provider_from_settings
from .services.circuit import CircuitBreaker
from .services.sink import SmtpSink
from .services.smtp import SmtpPool
from .services.store import CampaignRecord, DeadLetterRecord, Store
from .services.store.adapters import StoreCampaignSource, StoreDeliveryRecorder
from .system import System

log = logging.getLogger(__name__)

class CountingRecorder:
    """Records deliveries in the store and counts them in Redis for the monitor and
    ``/metrics`` (``{prefix}:monitor:emails``: sent, bounced, failed)."""

    def __init__(self, store: Store, redis: AnyRedis, key_prefix: str) -> None:
        self.inner = StoreDeliveryRecorder(store)
        self.redis = redis
        self.counter_key = emails_counter_key(key_prefix)

    async def record(self, deliveries: Sequence[Delivery], *,
                     only_missing: bool = False) -> None:
        if not deliveries:
            return
        await self.inner.record(deliveries, only_missing=only_missing)
        if only_missing:
            return  # outcomes counted when they happened
        tally = Counter(d.status for d in deliveries)
        pipe = self.redis.pipeline(transaction=False)
        for status, n in tally.items():
            pipe.hincrby(self.counter_key, status, n)
        await pipe.execute()


class WorkerServices:
    """Everything the processors of one worker process use. ``open`` then ``close``.

    Args:
        settings: the configuration.
        smtp_url: where mail goes (``settings.smtp_url`` by default; ``run_system``
            passes the dev sink's URL when none is configured).
    """

    def __init__(self, settings: Settings, *, smtp_url: str | None = None) -> None:
        self.settings = settings
        self.smtp_url = smtp_url or (
            settings.smtp_url.get_secret_value() if settings.smtp_url else None)
        self.redis: AnyRedis | None = None
        self.store: Store | None = None
        self.pool: SmtpPool | None = None
        self.provider: AIProvider | None = None
        self.manager: QueueManager | None = None
        self.email: EmailProcessor | None = None

    async def open(self) -> WorkerServices:
        s = self.settings
        self.redis = await connect(s, client_name=f"{s.key_prefix}:services")
        self.store = Store.from_settings(s)
        await self.store.init()
        self.manager = QueueManager(s)
        await self.manager.connect()
        self.provider = provider_from_settings(s)
        if self.smtp_url is not None:
            self.pool = SmtpPool(self.smtp_url, size=s.smtp_pool_size, timeout=s.smtp_timeout_s)
        return self

    async def close(self) -> None:
        if self.email is not None:
            await self.email.close()
        if self.pool is not None:
            await self.pool.close()
        if self.provider is not None:
            closer = getattr(self.provider, "aclose", None)
            if closer is not None:
                await closer()
        if self.manager is not None:
            await self.manager.close()
        if self.store is not None:
            await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()

    def registry(self) -> ProcessorRegistry:
        """The processors of every queue, by job name."""
        assert self.redis is not None
        assert self.store is not None
        assert self.provider is not None
        assert self.manager is not None
        s = self.settings
        registry = ProcessorRegistry()
        if self.pool is not None:
            self.email = EmailProcessor(
                s, self.redis, self.pool, StoreCampaignSource(self.store),
                deliveries=CountingRecorder(self.store, self.redis, s.key_prefix),
                suppressions=self.store,
                lifecycle=CampaignLifecycle(self.redis, s.key_prefix, on_complete=partial(
                    enqueue_campaign_complete, self.manager)),
                wake=partial(wake_batch, self.manager))
            # Campaign batches and transactional mail go through the same processor;
            # the names the original design's examples use are registered too.
            for name in (EMAIL_SEND_BATCH, "send-newsletter", "welcome-email",
                         "reminder-email", "transactional"):
                registry.register(QueueName.EMAIL, name, self.email)
        analytics = {**build_analytics_processors(self.store, limits=s.job_limits),
                     **build_inbound_processors(self.store, s, limits=s.job_limits)}
        for name, analytics_fn in analytics.items():
            registry.register(QueueName.ANALYTICS, name, analytics_fn)
        breaker = CircuitBreaker(self.redis, s.key_prefix, AI_BREAKER,
                                 threshold=s.ai_breaker_threshold,
                                 cooldown_ms=s.ai_breaker_cooldown_ms)
        ai = build_ai_processors(self.provider, breaker, self.store, limits=s.job_limits)
        for name, ai_fn in ai.items():
            registry.register(QueueName.AI, name, ai_fn)
        # AI jobs are dispatched on data.type, so any job name a producer picks works.
        registry.set_default(QueueName.AI, ai["ai-job"])
        return registry

    def attach_hooks(self, workers: Iterable[Worker]) -> None:
        """Dead letters for failed-for-good jobs, campaign completion for email, and the
        monitor's records (errors stream, processing times)."""
        workers = list(workers)
        for worker in workers:
            worker.on("failed", self._on_failed)
        assert self.redis is not None
        MonitorRecorder(self.redis, self.settings).attach(workers)

    async def _on_failed(self, job: Job, error: BaseException) -> None:
        if not job.failed_for_good:
            return
        if self.store is not None:
            await self.store.add_dead_letter(DeadLetterRecord(
                queue=job.queue, job_id=str(job.id), job_name=job.name, data=job.data,
                error=str(error) or type(error).__name__,
                stacktrace=[*job.stacktrace(), "".join(traceback.format_exception(error))],
                attempts=job.attempts_made, failed_at=datetime.now(UTC)))
        if job.queue == QueueName.EMAIL and self.email is not None:
            await self.email.lifecycle.batch_failed_for_good(job)


async def run_worker_process(
    settings: Settings,
    queues: Sequence[str] | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """A production worker process (``newsletter-queue worker``): the processors of
    ``queues`` (all by default) until SIGTERM/SIGINT, then a graceful stop.

    Mail goes to ``SMTP_URL``; without it the email queue's jobs are not processed here
    (the dev sink belongs to ``up``), and this is said on stderr.
    """
    async with System(settings, stop=stop) as system:
        services = await _start_workers(system, WorkerServices(settings), queues)
        if services.pool is None and (queues is None or QueueName.EMAIL in queues):
            _say("SMTP_URL is not set: email jobs will fail; set it, or use "
                 "`newsletter-queue up` for the dev SMTP sink")
        await system.wait()


async def run_system(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    demo: bool = False,
    queues: Sequence[str] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run Redis (embedded if needed), the dev SMTP sink, workers and the dev API.

    With the dev sink (no ``SMTP_URL``) and no ``NLQ_BOUNCE_DOMAIN``, messages are sent
    from bounce addresses on ``DEV_BOUNCE_DOMAIN``, which the sink hands to the
    ``inbound-message`` job: bounces can be tried out by mailing the sink."""
    if settings.bounce_domain is None and settings.smtp_url is None:
        settings = settings.model_copy(update={"bounce_domain": DEV_BOUNCE_DOMAIN})
    try:
        async with System(settings, stop=stop) as system:
            try:
                services = await _start_dev_system(system, host, port, queues)
                if demo:
                    assert services.manager is not None
                    count = await send_demo_campaign(services.manager)
                    _say(f"demo campaign queued: {count} recipients in batches of 50")
                _say("press Ctrl-C to stop")
                await system.wait()
            finally:
                _say("stopping…")
    finally:
        _say("stopped.")


async def _start_workers(system: System, services: WorkerServices,
                         queues: Sequence[str] | None) -> WorkerServices:
    """Open ``services`` (closed when ``system`` stops) and start their workers."""
    system.close_later(services.close)
    await services.open()
    workers = system.start_workers(services.registry(), queues)
    services.attach_hooks(workers)
    return services


async def _start_dev_system(system: System, host: str, port: int,
                            queues: Sequence[str] | None) -> WorkerServices:
    """Everything ``up`` runs: Redis, the dev sink (unless ``SMTP_URL`` is set), the
    workers and the dev API beside them, sharing their manager and store."""
    from .api import create_app  # a worker process never loads the HTTP side

    settings = system.settings
    redis = await connect(settings, client_name=f"{settings.key_prefix}:system")
    system.close_later(redis.aclose)
    smtp_url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
    sink: SmtpSink | None = None
    if smtp_url is None:
        sink = await SmtpSink("127.0.0.1", settings.dev_smtp_port, redis=redis,
                              key_prefix=settings.key_prefix,
                              bounce_domain=settings.bounce_domain).start()
        system.close_later(sink.stop)
        smtp_url = sink.url
        _say(f"dev SMTP sink on {sink.url} (captured mail is shown in the dashboard; "
             f"mail to @{settings.bounce_domain} is processed as bounces)")
    services = await _start_workers(system, WorkerServices(settings, smtp_url=smtp_url),
                                    queues)
    if sink is not None and services.manager is not None:
        sink.handler.inbound = inbound_hook(services.manager)
    _say("workers running: " + ", ".join(f"{w.queue}×{w.options.concurrency}"
                                         for w in system.workers))
    app = create_app(settings, manager=services.manager, store=services.store, host=host)
    await system.serve(app, host=host, port=port)
    _say(f"dashboard: http://{host}:{port}/dashboard   (API: /api/dev/queue, "
         "metrics: /metrics)")
    return services


def inbound_hook(manager: QueueManager) -> Callable[[bytes, str], Awaitable[object]]:
    """What the dev sink does with mail to the bounce domain: the same
    ``inbound-message`` job as ``POST /api/inbound``."""
    async def hand_over(raw: bytes, rcpt: str) -> object:
        return await manager.schedule_inbound_message(raw, rcpt=rcpt)

    return hand_over


DEMO_CONTENT = CampaignRecord(
    tenant_id="demo-tenant",
    campaign_id="welcome-demo",
    subject="Welcome to the newsletter, {{ name }}!",
    html="<h1>Hello {{ name }}</h1><p>Your plan: <b>{{ personalizations.plan }}</b>.</p>"
         "<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
    text="Hello {{ name }}\nYour plan: {{ personalizations.plan }}\n"
         "Unsubscribe: {{ unsubscribe_url }}\n",
    from_addr="Demo Newsletter <news@demo.example>",
)


async def send_demo_campaign(manager: QueueManager, recipients: int = 200) -> int:
    """Save a demo campaign and send it through ``manager.campaigns`` (plus an AI job) —
    for ``up --demo``; it shows in the dashboard's Campaigns panel (tenant
    ``demo-tenant``)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    demo = DEMO_CONTENT
    campaign_id = f"welcome-demo-{stamp}"
    await manager.campaigns.save(demo.tenant_id, campaign_id, subject=demo.subject,
                                 html=demo.html, text=demo.text, from_addr=demo.from_addr)
    rows = [{"email": f"reader{i}@demo.example", "name": f"Reader {i}",
             "personalizations": {"plan": "pro" if i % 3 else "free"}}
            for i in range(recipients)]
    result = await manager.campaigns.send(demo.tenant_id, campaign_id, rows, batch_size=50)
    await manager.schedule_ai_job("subject-optimization", {
        "tenantId": demo.tenant_id, "type": "subject-optimization",
        "data": {"subjects": ["Welcome!", "FREE OFFER!!! ACT NOW",
                              "{{ name }}, your first issue is here"]}})
    return result.recipients


def _say(message: str) -> None:
    sys.stderr.write(f"newsletter-queue: {message}\n")
    sys.stderr.flush()
