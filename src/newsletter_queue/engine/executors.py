"""Running processors: async on the loop, sync in threads, CPU-heavy in processes.

The event loop also renews locks and fetches jobs, so it must never be blocked:

- ``async def`` processors are awaited on the loop.
- Plain functions run in a ``ThreadPoolExecutor`` sized to the worker's concurrency (not
  asyncio's small default pool), each call inside a copy of the caller's
  ``contextvars`` context, as starlette's ``run_in_threadpool`` does. The job's actions
  (``update_progress`` …) bridge back to the loop.
- With ``use_process_pool=True`` plain functions run in a ``ProcessPoolExecutor``
  (``spawn`` start method: no fork of a process with a running loop and threads). Such a
  processor must be a picklable top-level function; it receives ``job.snapshot()`` — a
  plain dict with ``id``, ``name``, ``queue``, ``data``, ``opts``, ``attempts_made``,
  ``attempts_started``, ``attempt``, ``timestamp``, ``processed_on`` and ``progress`` —
  and its return value and exceptions must be picklable. Heavy CPU work then cannot
  starve lock renewal. A child that dies breaks the pool: the job's attempt fails and
  the next job gets a fresh pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger(__name__)

Processor: TypeAlias = "Callable[[Job], Any]"


@runtime_checkable
class ProcessorRouter(Protocol):
    """Picks the processor of each job (e.g. by job name); see ``registry.py``."""

    def resolve(self, job: Job) -> Callable[..., Any]:
        """Return the processor for ``job``; raise ``UnrecoverableError`` if none."""
        ...


def is_async_callable(fn: Any) -> bool:
    """True for ``async def`` functions, partials of them and objects with an async call."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))  # noqa: B004 - an async __call__ is what we look for


class ProcessorExecutor:
    """Calls processors the right way for their kind (see the module docstring).

    Args:
        queue: names the pool threads.
        max_workers: threads/processes; the worker's concurrency.
        use_process_pool: run plain functions in processes instead of threads.
    """

    def __init__(self, queue: str, max_workers: int, *, use_process_pool: bool) -> None:
        self.queue = queue
        self.max_workers = max_workers
        self.use_process_pool = use_process_pool
        self._threads: ThreadPoolExecutor | None = None
        self._processes: ProcessPoolExecutor | None = None
        self._kinds: dict[Any, bool] = {}

    def _is_async(self, fn: Callable[..., Any]) -> bool:
        try:
            return self._kinds[fn]
        except KeyError:
            kind = self._kinds[fn] = is_async_callable(fn)
            return kind
        except TypeError:  # unhashable callable
            return is_async_callable(fn)

    async def run(self, fn: Callable[..., Any], job: Job) -> Any:
        """Run ``fn`` for ``job`` and return its result (awaiting it if needed)."""
        if self._is_async(fn):
            return await fn(job)
        loop = asyncio.get_running_loop()
        if self.use_process_pool:
            return await self._run_in_process(loop, fn, job)
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix=f"nlq-{self.queue}")
        context = contextvars.copy_context()
        result = await loop.run_in_executor(self._threads, context.run, fn, job)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _run_in_process(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], job: Job
    ) -> Any:
        if self._processes is None:
            self._processes = ProcessPoolExecutor(
                max_workers=self.max_workers, mp_context=multiprocessing.get_context("spawn"))
        pool = self._processes
        try:
            return await loop.run_in_executor(pool, fn, job.snapshot())
        except BrokenProcessPool:
            log.warning("process pool of queue %s broke while running job %s; "
                        "starting a new pool for the next job", self.queue, job.id)
            if self._processes is pool:
                self._processes = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def shutdown(self, *, terminate: bool = False) -> None:
        """Stop the pools without waiting (``close()`` has already waited for the jobs).

        With ``terminate`` (jobs were abandoned after the grace period) the pool's child
        processes are terminated too, so an endless CPU-bound job cannot keep the
        program from exiting. Threads cannot be stopped: a sync processor still running
        finishes in the background and its result is ignored.
        """
        threads, self._threads = self._threads, None
        processes, self._processes = self._processes, None
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        if processes is not None:
            # ProcessPoolExecutor has no public way to stop a running task; its
            # ``_processes`` map (pid → Process) has been stable since Python 3.2.
            children = dict(getattr(processes, "_processes", None) or {})
            processes.shutdown(wait=False, cancel_futures=True)
            if terminate:
                for pid, child in children.items():
                    if child.is_alive():
                        log.warning("terminating process %s of queue %s: its job outlived "
                                    "the shutdown grace period", pid, self.queue)
                        child.terminate()
