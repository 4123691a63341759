"""A production-style worker process for the cluster tests.

    python -m tests.cluster.worker_proc SETTINGS_JSON QUEUES LEDGER_DIR

Opens ``WorkerServices`` (store, SMTP pool, AI provider, breakers) on the settings,
runs ``system.run_workers`` for the comma-separated ``QUEUES`` until SIGTERM, and
writes every execution to the execution log in ``LEDGER_DIR`` (``tests.support.execution_log``,
the format of the chaos workers too) — outside Redis, so the test counts executions
instead of trusting the store it checks: ``ready`` once its workers run, ``start`` when a
job becomes active, ``done`` when its completion was recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, Worker
from newsletter_queue.launch import WorkerServices
from newsletter_queue.system import run_workers
from tests.support.execution_log import LedgerWriter


async def main(overrides: dict[str, Any], queues: list[str], ledger_dir: Path) -> None:
    settings = Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
    ledger = LedgerWriter(ledger_dir)

    def active(job: Job) -> None:
        ledger.write("start", q=job.queue, j=str(job.id), x=ledger.next_execution(),
                     a=job.attempts_made + 1)

    def completed(job: Job, result: Any) -> None:
        ledger.write("done", q=job.queue, j=str(job.id))

    def on_start(workers: list[Worker]) -> None:
        services.attach_hooks(workers)
        for worker in workers:
            worker.on("active", active)
            worker.on("completed", completed)
        ledger.write("ready")

    services = await WorkerServices(settings).open()
    try:
        await run_workers(settings, queues, registry=services.registry(),
                          shutdown_timeout=10, on_start=on_start)
    finally:
        await services.close()
        ledger.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2].split(","), Path(sys.argv[3])))
