"""Benchmark: enqueue one campaign with ``schedule_batch_email_sending`` (one call).

    python bench/enqueue.py --recipients 100000 [--batch-size 100] [--repeat 3]

Runs against REDIS_URL, or the server the project would pick (127.0.0.1:6379, else the
embedded one), under a throw-away key prefix that is deleted afterwards. Prints progress
on stderr and, as its last stdout line, one JSON object:
``{"recipients": N, "jobs": J, "seconds": S}`` (S = median over ``--repeat`` runs,
each timing the single call: validation, splitting and the bulk add to Redis).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/email.py is named like the standard library's ``email`` package: keep this
# directory off sys.path so that ``import email`` (done by the stdlib) finds the real one.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import asyncio
import json
import statistics
import time
import uuid

from newsletter_queue import QueueManager, load_settings
from newsletter_queue.connection import delete_prefix


async def run(recipients: int, batch_size: int, repeat: int) -> dict[str, float | int]:
    rows = [{"email": f"user{i}@example.com", "name": f"User {i}",
             "personalizations": {"plan": "pro" if i % 3 else "free", "n": i}}
            for i in range(recipients)]
    timings: list[float] = []
    jobs = 0
    for attempt in range(repeat):
        prefix = f"nlqbench-{uuid.uuid4().hex[:8]}"
        settings = load_settings(key_prefix=prefix)
        async with QueueManager(settings) as manager:
            try:
                started = time.perf_counter()
                added = await manager.schedule_batch_email_sending(
                    f"bench-{attempt}", "tenant-bench", rows, batch_size)
                elapsed = time.perf_counter() - started
                jobs = len(added)
                stats = await manager.get_queue_stats("email")
                queued = stats.waiting + stats.prioritized
                if queued != jobs:
                    raise SystemExit(f"expected {jobs} queued jobs, found {queued}")
                timings.append(elapsed)
                print(f"run {attempt + 1}/{repeat}: {jobs} jobs in {elapsed:.3f}s "
                      f"(Redis {manager.url})", file=sys.stderr)
            finally:
                await delete_prefix(await manager.client(), prefix)
    return {"recipients": recipients, "jobs": jobs,
            "seconds": round(statistics.median(timings), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(run(args.recipients, args.batch_size, args.repeat))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
