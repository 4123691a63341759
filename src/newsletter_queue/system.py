"""``System``: the one object that runs what a process runs, and stops it in order.

Every long-running command is a ``System`` with different parts: ``newsletter-queue up``
(``launch.run_system``) runs every queue's workers, the API and what they share;
``newsletter-queue worker`` (``launch.run_worker_process``) and ``run_workers`` run
workers; ``newsletter-queue api`` (``api.serve_api``) runs the server alone. What they
have in common lives here, once:

- **Signals.** ``async with System(settings)`` makes it the process's system: SIGTERM
  and SIGINT ask it to stop, and a second one only says it is still waiting, so a
  nervous Ctrl-C cannot cut the active jobs' grace period short. Used without
  ``async with`` (tests, benchmarks, an application that embeds workers) it leaves the
  process's signals alone.
- **The stop, in order.** The server first, so no request reaches a half-stopped
  system; then the workers, each letting its active jobs finish for the shutdown
  timeout (``NLQ_SHUTDOWN_TIMEOUT_S``; what still runs then goes back to wait, never
  lost); then what was registered with ``close_later``, newest first, because what was
  opened last uses what was opened before it.
- **uvicorn**, set up once: on this event loop, without its own signal handling. It
  re-raises a signal after its shutdown, which makes a clean stop look like a crash
  (exit status -15) and would stop the server before the workers.

``wait()`` returns when a stop is asked for, or when a part ends by itself (a worker or
the server failing): the rest is then stopped rather than left running half a system.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .config import Settings, load_settings
from .engine import Worker, WorkerOptions
from .registry import ProcessorRegistry, default_registry

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SERVER_STOP_TIMEOUT_S = 10.0
_SERVER_START_POLL_S = 0.02

Closer = Callable[[], Awaitable[object]]


class System:
    """Workers, an HTTP server and the resources they share, started and stopped as one.

    Args:
        settings: the configuration (queue table, shutdown timeout).
        shutdown_timeout: seconds active jobs get to finish when the workers stop;
            ``settings.shutdown_timeout_s`` if omitted.
        stop: an event that asks the system to stop when set (besides the signals).
    """

    def __init__(self, settings: Settings, *, shutdown_timeout: float | None = None,
                 stop: asyncio.Event | None = None) -> None:
        self.settings = settings
        self.shutdown_timeout = (settings.shutdown_timeout_s if shutdown_timeout is None
                                 else shutdown_timeout)
        self._stop = stop if stop is not None else asyncio.Event()
        self._workers: list[Worker] = []
        self._server: Any = None  # uvicorn.Server, imported only when serving
        self._server_task: asyncio.Task[None] | None = None
        self._closers: list[Closer] = []
        self._signals: list[signal.Signals] = []
        self._stopping: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (f"<System workers={[w.queue for w in self._workers]} "
                f"serving={self._server is not None}>")

    @property
    def workers(self) -> list[Worker]:
        """The workers started and not stopped yet."""
        return list(self._workers)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    async def __aenter__(self) -> System:
        self._handle_signals()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Ask the system to stop: ``wait()`` returns (what a signal does)."""
        self._stop.set()

    def close_later(self, close: Closer) -> None:
        """Close a resource when the system stops, after the workers, newest first."""
        self._closers.append(close)

    def start_workers(self, registry: ProcessorRegistry | None = None,
                      queues: Iterable[str] | None = None) -> list[Worker]:
        """Start one worker per queue (every queue of the settings by default).

        Each runs with its queue's options (``WorkerOptions.for_queue``) and picks a
        job's processor from ``registry`` by job name. Needs a running event loop.

        Raises:
            QueueNotFoundError: a name is not in the queue table (nothing is started).
        """
        if self._stopping is not None:
            raise RuntimeError("this system is stopping; start a new one")
        registry = registry if registry is not None else default_registry
        names = list(dict.fromkeys(queues)) if queues is not None else list(self.settings.queues)
        options = {name: WorkerOptions.for_queue(self.settings.queue_config(name))
                   for name in names}
        asyncio.get_running_loop()  # fail before creating anything if there is no loop
        workers = [Worker(name, registry.router(name), settings=self.settings, options=opts)
                   for name, opts in options.items()]
        for worker in workers:
            if not registry.names(worker.queue):
                log.warning("queue %s has no registered processors: its jobs will fail as "
                            "unrecoverable", worker.queue)
            worker.start()
            self._workers.append(worker)
        return workers

    async def serve(self, app: Any, *, host: str, port: int,
                    log_level: str = "warning") -> None:
        """Serve the ASGI ``app`` with uvicorn until the system stops; return once it
        listens.

        Raises:
            Whatever keeps the server from starting (the port in use …).
        """
        import uvicorn  # a worker process never loads the HTTP stack

        if self._server is not None:
            raise RuntimeError("this system already serves an app")
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                               lifespan="on", access_log=False))
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        task = asyncio.create_task(server.serve(), name="nlq-api")
        self._server, self._server_task = server, task
        while not server.started:  # uvicorn has no start-up event to wait on
            if task.done():
                task.result()  # raises the start-up error
                raise RuntimeError(f"the API stopped during start-up on {host}:{port}")
            await asyncio.sleep(_SERVER_START_POLL_S)

    async def wait(self) -> None:
        """Until a stop is asked for, or a part (a worker, the server) ends by itself."""
        parts = [w.start() for w in self._workers]
        if self._server_task is not None:
            parts.append(self._server_task)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait({stopper, *parts}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        for task in done - {stopper}:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s stopped unexpectedly; shutting the others down", task.get_name())

    async def stop(self) -> None:
        """Stop everything in order (server, workers, resources). Idempotent."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(
                self._stop_all(), name="nlq-system-stop")
        await asyncio.shield(self._stopping)

    async def _stop_all(self) -> None:
        self._stop.set()
        try:
            await self._stop_server()
            await self._stop_workers()
            await self._close_resources()
        finally:
            loop = asyncio.get_running_loop()
            for sig in self._signals:
                loop.remove_signal_handler(sig)
            self._signals.clear()

    async def _stop_server(self) -> None:
        task, self._server_task = self._server_task, None
        if self._server is not None:
            self._server.should_exit = True
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=SERVER_STOP_TIMEOUT_S)
        if not done:
            log.warning("the API did not stop within %.0f s; cancelling it",
                        SERVER_STOP_TIMEOUT_S)
            task.cancel()
        elif not task.cancelled() and task.exception() is not None:
            log.error("the API failed", exc_info=task.exception())

    async def _stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        if not workers:
            return
        log.info("stopping %d worker(s) (grace period %.0f s)", len(workers),
                 self.shutdown_timeout)
        results = await asyncio.gather(*(w.close(self.shutdown_timeout) for w in workers),
                                       return_exceptions=True)
        for worker, result in zip(workers, results, strict=True):
            if isinstance(result, BaseException):
                log.error("closing the worker of queue %s failed", worker.queue,
                          exc_info=result)

    async def _close_resources(self) -> None:
        """Every closer runs, even after one fails; the first failure is raised."""
        closers, self._closers = self._closers[::-1], []
        errors: list[Exception] = []
        for close in closers:
            try:
                await close()
            except Exception as exc:
                errors.append(exc)
        for later in errors[1:]:
            log.error("closing a resource failed as well", exc_info=later)
        if errors:
            raise errors[0]

    def _handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                log.debug("cannot install a handler for %s here", sig.name)
            else:
                self._signals.append(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            log.warning("received %s again; still waiting for active jobs", sig.name)
        else:
            log.info("received %s; stopping", sig.name)
        self._stop.set()


async def run_workers(
    settings: Settings | None = None,
    queues: Iterable[str] | None = None,
    *,
    registry: ProcessorRegistry | None = None,
    shutdown_timeout: float | None = None,
    stop: asyncio.Event | None = None,
    on_start: Callable[[list[Worker]], Any] | None = None,
) -> None:
    """Run workers until SIGTERM/SIGINT (or ``stop`` is set), then stop gracefully.

    Active jobs get ``shutdown_timeout`` seconds (``settings.shutdown_timeout_s`` by
    default) to finish; the rest go back to wait. ``on_start(workers)`` runs once the
    workers exist (to attach hooks).
    """
    async with System(settings or load_settings(), shutdown_timeout=shutdown_timeout,
                      stop=stop) as system:
        workers = system.start_workers(registry, queues)
        if on_start is not None:
            on_start(workers)
        await system.wait()
