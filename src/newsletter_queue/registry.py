"""The processor registry: which function processes a job, by queue and job name.

A queue's worker (started by ``System.start_workers``, see ``system.py``) routes each
job through ``registry.router(queue)``: the job's *name* picks the function. A job whose
name has no processor fails at once as unrecoverable, and the failure names the
registered ones — retrying it could not help.

Processors are registered, not discovered, so what runs is explicit::

    registry = ProcessorRegistry()

    @registry.processor("email", "send-batch")
    async def send_batch(job: Job) -> dict[str, int]:
        ...

    await run_workers(settings, ["email"], registry=registry)  # newsletter_queue.system
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .engine import Job, UnrecoverableError

F = TypeVar("F", bound=Callable[..., Any])


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


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
