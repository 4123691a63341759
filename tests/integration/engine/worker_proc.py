"""A worker in its own process, for the SIGKILL and SIGTERM tests.

    python -m tests.integration.engine.worker_proc URL PREFIX MODE [GRACE_S]

MODE ``worker``: an engine Worker on queue ``email`` with a 1 s lock (killed by the test).
MODE ``run_workers``: ``system.run_workers`` for queue ``email`` until SIGTERM, active
jobs getting ``GRACE_S`` seconds (10 by default) to finish.
Both process jobs named ``slow`` by sleeping ``data["seconds"]``; ``run_workers`` also
processes jobs named ``gated``, which end once a member is added to the sorted set
``data["gate"]`` (so a test decides when the job ends, whatever the machine's speed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import redis.asyncio as aioredis

from newsletter_queue.config import Settings
from newsletter_queue.engine import Job, Worker
from newsletter_queue.registry import ProcessorRegistry
from newsletter_queue.system import run_workers


async def slow(job: Job) -> dict[str, Any]:
    await asyncio.sleep(float(job.data.get("seconds", 60)))
    return {"pid": os.getpid()}


async def main(url: str, prefix: str, mode: str, grace_s: float) -> None:
    settings = Settings(_env_file=None, redis_url=url, key_prefix=prefix)  # type: ignore[call-arg]
    if mode == "worker":
        worker = Worker("email", slow, settings=settings, lock_duration_ms=1000,
                        stalled_interval_ms=1000, name="victim")
        await worker.run()
        return
    client = aioredis.from_url(url)

    async def gated(job: Job) -> dict[str, Any]:
        # BZPOPMIN (the engine's own blocking wait, so an ACL-limited user may run it
        # too), a second at a time: no socket timeout can cut one short.
        while await client.bzpopmin([job.data["gate"]], timeout=1) is None:
            continue
        return {"pid": os.getpid()}

    registry = ProcessorRegistry()
    registry.register("email", "slow", slow)
    registry.register("email", "gated", gated)
    try:
        await run_workers(settings, ["email"], registry=registry, shutdown_timeout=grace_s)
    finally:
        await client.aclose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    grace = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], grace))
