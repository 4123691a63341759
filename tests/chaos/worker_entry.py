"""A production worker process, instrumented with the execution ledger.

    python -m tests.chaos.worker_entry --ledger DIR [--queues email,analytics]

Runs ``newsletter_queue.launch.run_worker_process`` — the real worker process with every
processor, the dead-letter and campaign hooks, SIGTERM handling — configured from the
environment (``REDIS_URL``, ``SMTP_URL``, ``NLQ_*``), with two additions made by
wrapping ``WorkerServices`` before it runs:

- every processor (the real email/analytics/AI ones and the ``chaos-job`` test
  processor on the analytics queue, which sleeps ``data.ms`` milliseconds) writes a
  ``start`` and an ``end`` record per execution to the ledger (``tests.support.execution_log``);
- the workers' ``completed``, ``failed`` and ``stalled`` hooks write ``done``,
  ``failed`` and ``stalled`` records.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, Worker
from newsletter_queue.engine.executors import is_async_callable
from newsletter_queue.launch import WorkerServices, run_worker_process
from newsletter_queue.registry import ProcessorRegistry
from tests.support.execution_log import LedgerWriter

CHAOS_QUEUE = "analytics"
CHAOS_JOB = "chaos-job"
_NO_SUCH_NAME = "\x00chaos-no-such-job-name"


async def chaos_job(job: Job) -> dict[str, Any]:
    """Sleep ``data.ms`` milliseconds (``data`` of the analytics job payload)."""
    params = (job.data.get("data") if isinstance(job.data, dict) else None) or {}
    ms = float(params.get("ms", 0) or 0)
    if ms > 0:
        await asyncio.sleep(ms / 1000)
    return {"pid": os.getpid()}


def _instrument(fn: Callable[..., Any], ledger: LedgerWriter) -> Callable[..., Any]:
    def begin(job: Any) -> int:
        seq = ledger.next_execution()
        ledger.write("start", q=job.queue, j=str(job.id), x=seq, a=job.attempts_made + 1,
                     stc=job.stalled_counter)
        return seq

    def finish(job: Any, seq: int, error: BaseException | None) -> None:
        if error is None:
            ledger.write("end", q=job.queue, j=str(job.id), x=seq, ok=True)
        else:
            ledger.write("end", q=job.queue, j=str(job.id), x=seq, ok=False,
                         err=type(error).__name__)

    if is_async_callable(fn):
        async def run_async(job: Any) -> Any:
            seq = begin(job)
            try:
                result = await fn(job)
            except BaseException as exc:
                finish(job, seq, exc)
                raise
            finish(job, seq, None)
            return result

        return run_async

    def run_sync(job: Any) -> Any:
        seq = begin(job)
        try:
            result = fn(job)
        except BaseException as exc:
            finish(job, seq, exc)
            raise
        finish(job, seq, None)
        return result

    return run_sync


def instrumented(registry: ProcessorRegistry, queues: Iterable[str],
                 ledger: LedgerWriter) -> ProcessorRegistry:
    """A copy of ``registry`` (plus ``chaos-job``) whose processors write the ledger."""
    if registry.get(CHAOS_QUEUE, CHAOS_JOB) in (None, registry.get(CHAOS_QUEUE,
                                                                    _NO_SUCH_NAME)):
        registry.register(CHAOS_QUEUE, CHAOS_JOB, chaos_job)
    out = ProcessorRegistry()
    for queue in queues:
        for name in registry.names(queue):
            fn = registry.get(queue, name)
            assert fn is not None
            out.register(queue, name, _instrument(fn, ledger))
        default = registry.get(queue, _NO_SUCH_NAME)
        if default is not None:
            out.set_default(queue, _instrument(default, ledger))
    return out


def install(ledger: LedgerWriter) -> None:
    """Wrap ``WorkerServices`` so that ``run_worker_process`` writes the ledger."""
    base_registry = WorkerServices.registry
    base_hooks = WorkerServices.attach_hooks

    def registry(self: WorkerServices) -> ProcessorRegistry:
        return instrumented(base_registry(self), self.settings.queues, ledger)

    def attach_hooks(self: WorkerServices, workers: Iterable[Worker]) -> None:
        workers = list(workers)
        base_hooks(self, workers)

        def on_completed(job: Job, result: Any) -> None:
            ledger.write("done", q=job.queue, j=str(job.id))

        def on_failed(job: Job, error: BaseException) -> None:
            ledger.write("failed", q=job.queue, j=str(job.id), reason=str(error),
                         final=job.failed_for_good)

        for worker in workers:
            worker.on("completed", on_completed)
            worker.on("failed", on_failed)
            worker.on("stalled", lambda job_id, q=worker.queue: ledger.write(
                "stalled", q=q, j=str(job_id)))

    WorkerServices.registry = registry  # type: ignore[method-assign]
    WorkerServices.attach_hooks = attach_hooks  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ledger", required=True, type=Path)
    parser.add_argument("--queues", default="email,analytics")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ledger = LedgerWriter(args.ledger)
    install(ledger)
    settings = Settings(_env_file=None)
    queues = [q for q in args.queues.split(",") if q]
    try:
        asyncio.run(run_worker_process(settings, queues))
    finally:
        ledger.close()


if __name__ == "__main__":
    main()
