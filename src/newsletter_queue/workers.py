"""Workers for the queue table: one engine ``Worker`` per queue, processors by job name.

``start_workers`` reads each queue's ``QueueConfig`` (concurrency, rate limit) from the
settings and starts a ``newsletter_queue.engine.Worker`` whose processor is the queue's
slice of a ``ProcessorRegistry``: the job's *name* picks the function. A job whose name
has no processor fails at once as unrecoverable, and the failure names the registered
ones — retrying it could not help. ``run_workers`` is the long-running entry point (the
CLI's ``worker`` command): it runs until SIGTERM/SIGINT, then closes gracefully.

Processors are registered, not discovered, so what runs is explicit::

    registry = ProcessorRegistry()

    @registry.processor("email", "send-batch")
    async def send_batch(job: Job) -> dict[str, int]:
        ...

    await run_workers(settings, ["email"])  # with registry=registry
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .config import Settings, load_settings
from .engine import Job, UnrecoverableError, Worker
from .engine.metrics import ONE_WEEK_POINTS

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0


class ProcessorRegistry:
    """Processors by queue and job name.

    A processor is ``async def f(job)`` (runs on the event loop) or a plain function
    (runs in the worker's thread pool); both receive an engine ``Job``.
    """

    def __init__(self) -> None:
        self._processors: dict[str, dict[str, Callable[..., Any]]] = {}
        self._defaults: dict[str, Callable[..., Any]] = {}

    def set_default(self, queue: str, fn: Callable[..., Any]) -> None:
        """Process jobs of ``queue`` whose name has no processor with ``fn``."""
        if not callable(fn):
            raise TypeError("processor must be callable")
        self._defaults[queue] = fn

    def register(self, queue: str, job_name: str, fn: F) -> F:
        """Register ``fn`` for jobs named ``job_name`` in ``queue``; returns ``fn``.

        Raises:
            ValueError: a processor is already registered for that name.
        """
        if not callable(fn):
            raise TypeError("processor must be callable")
        if not queue or not job_name:
            raise ValueError("queue and job_name must be non-empty")
        by_name = self._processors.setdefault(queue, {})
        existing = by_name.get(job_name)
        if existing is not None and existing is not fn:
            raise ValueError(f"a processor for job {job_name!r} in queue {queue!r} is "
                             f"already registered ({_qualname(existing)})")
        by_name[job_name] = fn
        return fn

    def processor(self, queue: str, job_name: str) -> Callable[[F], F]:
        """Decorator form of ``register``."""

        def decorate(fn: F) -> F:
            return self.register(queue, job_name, fn)

        return decorate

    def unregister(self, queue: str, job_name: str) -> None:
        self._processors.get(queue, {}).pop(job_name, None)

    def names(self, queue: str) -> list[str]:
        """The job names with a processor in ``queue``, sorted."""
        return sorted(self._processors.get(queue, {}))

    def get(self, queue: str, job_name: str) -> Callable[..., Any] | None:
        found = self._processors.get(queue, {}).get(job_name)
        return found if found is not None else self._defaults.get(queue)

    def router(self, queue: str) -> QueueRouter:
        """The engine ``ProcessorRouter`` for ``queue`` (reads the registry live)."""
        return QueueRouter(self, queue)


class QueueRouter:
    """Resolves a job of one queue to its processor by job name."""

    def __init__(self, registry: ProcessorRegistry, queue: str) -> None:
        self.registry = registry
        self.queue = queue

    def resolve(self, job: Job) -> Callable[..., Any]:
        fn = self.registry.get(self.queue, job.name)
        if fn is None:
            names = self.registry.names(self.queue)
            raise UnrecoverableError(
                f"no processor registered for job name {job.name!r} in queue "
                f"{self.queue!r}; registered names: {', '.join(names) or '(none)'}")
        return fn


default_registry = ProcessorRegistry()
_running: list[Worker] = []


def running_workers() -> list[Worker]:
    """The workers started by ``start_workers`` and not stopped yet."""
    return list(_running)


def start_workers(
    queues: Iterable[str] | None = None,
    *,
    settings: Settings | None = None,
    registry: ProcessorRegistry | None = None,
) -> list[Worker]:
    """Start one worker per queue (all queues of the settings by default).

    Each worker takes its queue's concurrency, rate limit and lock/stall settings from
    ``settings.queue_config(name)`` and writes BullMQ metrics (one week of minutes).
    Must be called with an event loop running; the workers run as background tasks
    until ``stop_workers``.

    Raises:
        QueueNotFoundError: a name is not in the queue table.
    """
    settings = settings or load_settings()
    registry = registry if registry is not None else default_registry
    names = list(dict.fromkeys(queues)) if queues is not None else list(settings.queues)
    configs = {name: settings.queue_config(name) for name in names}
    asyncio.get_running_loop()  # fail before creating anything if there is no loop
    workers = [
        Worker(name, registry.router(name), settings=settings,
               concurrency=cfg.concurrency, limiter=cfg.rate_limit,
               lock_duration_ms=cfg.lock_duration_ms,
               stalled_interval_ms=cfg.stalled_interval_ms,
               max_stalled_count=cfg.max_stalled_count,
               metrics_max_data_points=ONE_WEEK_POINTS)
        for name, cfg in configs.items()
    ]
    for worker in workers:
        if not registry.names(worker.queue):
            log.warning("queue %s has no registered processors: its jobs will fail as "
                        "unrecoverable", worker.queue)
        worker.start()
        _running.append(worker)
    return workers


async def stop_workers(timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> None:  # noqa: ASYNC109 - grace period
    """Close every running worker, letting active jobs finish for up to ``timeout`` s."""
    workers = list(_running)
    _running.clear()
    await _close_all(workers, timeout)


async def _close_all(workers: list[Worker], grace_s: float) -> None:
    results = await asyncio.gather(*(w.close(grace_s) for w in workers),
                                   return_exceptions=True)
    for worker, result in zip(workers, results, strict=True):
        if isinstance(result, BaseException):
            log.error("closing the worker of queue %s failed", worker.queue, exc_info=result)


async def run_workers(
    settings: Settings | None = None,
    queues: Iterable[str] | None = None,
    *,
    registry: ProcessorRegistry | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
    stop: asyncio.Event | None = None,
    on_start: Callable[[list[Worker]], Any] | None = None,
) -> None:
    """Run workers until SIGTERM/SIGINT (or ``stop`` is set), then stop gracefully.

    Active jobs get ``shutdown_timeout`` seconds to finish; the rest go back to wait.
    ``on_start(workers)`` runs once the workers exist (to attach hooks).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, _on_signal, stop, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            log.debug("cannot install a handler for %s here", sig.name)
    workers = start_workers(queues, settings=settings, registry=registry)
    if on_start is not None:
        on_start(workers)
    tasks = [w.start() for w in workers]
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                log.error("a worker stopped unexpectedly; shutting the others down")
    finally:
        stopper.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
        for worker in workers:
            with contextlib.suppress(ValueError):
                _running.remove(worker)
        log.info("stopping %d worker(s) (grace period %.0f s)", len(workers), shutdown_timeout)
        await _close_all(workers, shutdown_timeout)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        log.warning("received %s again; still waiting for active jobs", sig.name)
    else:
        log.info("received %s; stopping the workers", sig.name)
    stop.set()


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
