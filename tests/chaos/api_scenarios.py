"""Scenario 9 of issue 6: many concurrent POSTs to the dev API, some repeating a job id.

The API runs in its own uvicorn process against the stage's private Redis; the load
comes from one ``aiohttp`` session with a connection per request, all requests in
flight at once. (Not httpx: its connection pool scans every connection for every
request, so with 1,000 connections the *client* became the bottleneck — it measured
itself, at under 100 requests/s.) Shared by ``tests/chaos/test_api_load.py`` and
``bench/chaos.py``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

import aiohttp
import httpx

from tests.chaos.harness import PREFIX, ScenarioResult, Stage

LOAD_QUEUE = "analytics"


def job_ids(requests: int, repeat_fraction: float, seed: int = 9) -> list[str]:
    """``requests`` ids of which ``repeat_fraction`` repeat an id already in the list,
    shuffled (so a repeat may race its original)."""
    repeats = round(requests * repeat_fraction)
    unique = [f"load-{i}" for i in range(requests - repeats)]
    rng = random.Random(seed)
    ids = unique + [rng.choice(unique) for _ in range(repeats)]
    rng.shuffle(ids)
    return ids


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def api_load(workdir: Path, requests: int = 1000, repeat_fraction: float = 0.1
                   ) -> ScenarioResult:
    """POST ``requests`` jobs at once; count responses, latencies and jobs in Redis."""
    result = ScenarioResult(f"API load ({requests} concurrent POSTs, "
                            f"{repeat_fraction:.0%} repeated job ids)")
    ids = job_ids(requests, repeat_fraction)
    async with Stage(workdir, sink=False) as stage:
        api = stage.api()
        if api is None:
            raise RuntimeError("this checkout has no dev API")
        async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as http:
            await api.wait_ready(http)
        start = asyncio.Event()
        samples: dict[str, str] = {}
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(api.base_url, connector=connector,
                                         timeout=timeout) as session:

            async def post(job_id: str) -> tuple[int | str, float]:
                body = {"name": "campaign-complete",
                        "data": {"campaignId": job_id, "tenantId": "t-load",
                                 "eventType": "campaign-complete"},
                        "opts": {"job_id": job_id}}
                await start.wait()
                began = time.perf_counter()
                try:
                    async with session.post(f"/api/dev/queues/{LOAD_QUEUE}/jobs",
                                            json=body) as response:
                        text = await response.text()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    return type(exc).__name__, time.perf_counter() - began
                if response.status >= 300:
                    samples.setdefault(str(response.status), text[:300])
                return response.status, time.perf_counter() - began

            tasks = [asyncio.create_task(post(i)) for i in ids]
            await asyncio.sleep(0)  # let every task reach the start line
            wall = time.perf_counter()
            start.set()
            outcomes = await asyncio.gather(*tasks)
            wall = time.perf_counter() - wall
        client = stage.redis.client()
        try:
            stored = {k.rsplit(":", 1)[1] for k in await client.keys(
                f"{PREFIX}:{LOAD_QUEUE}:load-*") if k.count(":") == 2}
            waiting = int(await client.llen(f"{PREFIX}:{LOAD_QUEUE}:wait"))
        finally:
            await client.aclose()
        api_log = api.log.read_text(errors="replace")
    statuses: dict[str, int] = {}
    for status, _ in outcomes:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    latencies = [seconds * 1000 for _, seconds in outcomes]
    unique = set(ids)
    errors = sum(n for s, n in statuses.items() if s not in ("200", "201"))
    result.accepted = len(unique)
    result.completed = len(stored & unique)
    result.lost = len(unique - stored)
    result.recovery_s = None
    result.extra.update({
        "requests": requests,
        "unique_ids": len(unique),
        "jobs_created": len(stored),
        "jobs_waiting": waiting,
        "created_responses": statuses.get("201", 0),
        "duplicate_responses": statuses.get("200", 0),
        "errors": errors,
        "statuses": statuses,
        "error_samples": samples,
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "requests_per_s": round(requests / wall, 1),
        "api_log_tracebacks": api_log.count("Traceback"),
    })
    return result

