"""A worker in its own process, for the SIGKILL and SIGTERM tests.

    python -m tests.integration.engine.worker_proc URL PREFIX MODE

MODE ``worker``: an engine Worker on queue ``email`` with a 1 s lock (killed by the test).
MODE ``run_workers``: ``system.run_workers`` for queue ``email`` until SIGTERM.
Both process jobs named ``slow`` by sleeping ``data["seconds"]``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, Worker
from newsletter_queue.system import run_workers
from newsletter_queue.workers import ProcessorRegistry


async def slow(job: Job) -> dict[str, Any]:
    await asyncio.sleep(float(job.data.get("seconds", 60)))
    return {"pid": os.getpid()}


async def main(url: str, prefix: str, mode: str) -> None:
    settings = Settings(_env_file=None, redis_url=url, key_prefix=prefix)  # type: ignore[call-arg]
    if mode == "worker":
        worker = Worker("email", slow, settings=settings, lock_duration_ms=1000,
                        stalled_interval_ms=1000, name="victim")
        await worker.run()
    else:
        registry = ProcessorRegistry()
        registry.register("email", "slow", slow)
        await run_workers(settings, ["email"], registry=registry, shutdown_timeout=10)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
