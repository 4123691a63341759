"""Benchmark: no-op job throughput of our engine Worker vs. ``bullmq.Worker`` vs. Node BullMQ.

    python bench/worker.py [--jobs 20000] [--rounds 3] [--concurrency 1,10,100]
                           [--skip-ours] [--skip-bullmq] [--skip-node] [--timeout 120]

Why three implementations: DESIGN.md replaced ``bullmq.Worker`` (the Python port, the
baseline) with our own engine because of its throughput; Node BullMQ's Worker (run
through the test harness in ``tests/node``) is the reference the engine should approach.

Every run uses a fresh key prefix, first enqueues ``--jobs`` jobs with
``bullmq.Queue.addBulk`` (BullMQ's own Lua scripts, pipelined in chunks), then times
from worker construction until the last job is completed — for our engine and Node's,
the worker's own N-th ``completed`` event (nothing polls Redis from the measured
process); for ``bullmq.Worker``, the queue's completed set (polled) holding every job —
closes the worker, checks nothing failed and deletes the prefix's keys. Jobs are kept on
completion (no ``removeOnComplete``) so the count is exact. Runs are interleaved (for each round,
for each concurrency, for each implementation) so drift on the machine hits all three
alike; a figure is the median of the rounds. A run that exceeds ``--timeout`` is
recorded as null and the benchmark continues. Node's rate is timed inside the Node
process (from ``new Worker`` to the last ``completed`` event), so Node's start-up is not
counted, as Python's is not.

Latency: 1,000 jobs are added 2 ms apart (from a producer thread with its own event loop
and connection) to an idle engine Worker; each job carries ``time.time()`` at enqueue
and the processor subtracts it from ``time.time()`` when it starts.

The benchmark process (both Python workers) runs on the event loop the product's worker
processes use (``eventloop``: uvloop where installed; ``NLQ_EVENT_LOOP=asyncio`` for
asyncio's); the JSON names it.

Redis: ``REDIS_URL`` if set, else the server the project would pick
(``resolve_redis_url(Settings())``). Progress goes to stderr; the last stdout line is one
JSON object::

    {"jobs": 20000, "ours": {"1": R, "10": R, "100": R}, "bullmq": {...},
     "node": {...} or null, "latency_ms": {"p50": L, "p99": L}, "ratios": {...}, ...}

with R in jobs/s; ``node`` is null when ``node`` is absent (or ``--skip-node``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/email.py is named like the standard library's ``email`` package: keep this
# directory off sys.path so that ``import email`` (done by the stdlib) finds the real one.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import bullmq
import redis.asyncio as aioredis

from newsletter_queue import eventloop
from newsletter_queue.config import Settings, load_settings, mask_url
from newsletter_queue.connection import delete_prefix, resolve_redis_url

QUEUE = "analytics"  # a real queue name (the engine may insist) with no rate limit
ENQUEUE_CHUNK = 1000
POLL_S = 0.005
IMPLS = ("ours", "bullmq", "node")

Rate = float | None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _load_node_harness() -> ModuleType:
    """Import ``tests/support/nodeharness.py`` by path: bench/ is not a package on sys.path."""
    path = Path(__file__).resolve().parent.parent / "tests" / "support" / "nodeharness.py"
    spec = importlib.util.spec_from_file_location("nlq_nodeharness", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the Node harness from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _engine_ready() -> bool:
    try:
        engine = importlib.import_module("newsletter_queue.engine")
    except ImportError:
        return False
    return hasattr(engine, "Worker")


def _redis_url() -> str:
    return os.environ.get("REDIS_URL") or resolve_redis_url(Settings())


async def _enqueue(client: aioredis.Redis, prefix: str, jobs: int) -> float:
    """Add ``jobs`` no-op jobs through BullMQ's scripts; returns the seconds it took."""
    queue = bullmq.Queue(QUEUE, {"connection": client, "prefix": prefix})
    started = time.perf_counter()
    for start in range(0, jobs, ENQUEUE_CHUNK):
        await queue.addBulk([{"name": "noop", "data": {"i": i}}
                             for i in range(start, min(start + ENQUEUE_CHUNK, jobs))])
    elapsed = time.perf_counter() - started
    waiting = int(await client.llen(f"{prefix}:{QUEUE}:wait"))
    if waiting != jobs:
        raise RuntimeError(f"enqueued {jobs} jobs but {waiting} are waiting")
    return elapsed


async def _wait_completed(client: aioredis.Redis, prefix: str, jobs: int) -> None:
    key = f"{prefix}:{QUEUE}:completed"
    while True:
        if int(await client.zcard(key)) >= jobs:
            return
        await asyncio.sleep(POLL_S)  # polling interval, not a settle delay


@dataclass
class Bench:
    """One benchmark session: settings, connections and the collected figures."""

    url: str
    jobs: int
    timeout: float
    node: ModuleType | None = None
    node_modules: Path | None = None
    runs: dict[str, dict[str, list[Rate]]] = field(default_factory=dict)

    async def run_once(self, impl: str, concurrency: int) -> Rate:
        """Enqueue, run one implementation until done (or timeout), clean up."""
        prefix = f"nlqbw-{uuid.uuid4().hex[:12]}"
        client = aioredis.Redis.from_url(self.url, decode_responses=True)
        try:
            enqueue_s = await _enqueue(client, prefix, self.jobs)
            _log(f"  enqueued {self.jobs} jobs in {enqueue_s:.2f}s under {prefix}")
            runner: Callable[[aioredis.Redis, str, int], Awaitable[Rate]] = {
                "ours": self._run_ours, "bullmq": self._run_bullmq, "node": self._run_node,
            }[impl]
            rate = await runner(client, prefix, concurrency)
            if rate is not None:
                completed = int(await client.zcard(f"{prefix}:{QUEUE}:completed"))
                failed = int(await client.zcard(f"{prefix}:{QUEUE}:failed"))
                if completed != self.jobs or failed:
                    _log(f"  {impl}: {completed} completed, {failed} failed of {self.jobs}; "
                         "discarding this run")
                    rate = None
            return rate
        finally:
            await delete_prefix(client, prefix)
            await client.aclose()

    async def _timed(self, client: aioredis.Redis, prefix: str,
                     started: float, impl: str) -> Rate:
        try:
            await asyncio.wait_for(_wait_completed(client, prefix, self.jobs), self.timeout)
        except TimeoutError:
            done = int(await client.zcard(f"{prefix}:{QUEUE}:completed"))
            _log(f"  {impl}: timed out after {self.timeout:.0f}s ({done}/{self.jobs} done)")
            return None
        return self.jobs / (time.perf_counter() - started)

    async def _run_ours(self, client: aioredis.Redis, prefix: str, concurrency: int) -> Rate:
        from newsletter_queue.engine import Worker

        async def noop(job: Any) -> None:
            return None

        settings = load_settings(redis_url=self.url, key_prefix=prefix)
        started = time.perf_counter()
        worker = Worker(QUEUE, noop, settings=settings, concurrency=concurrency)
        # Timed as Node's is: to the last ``completed`` event, with nothing polling Redis
        # from the worker's own process meanwhile.
        finished = asyncio.Event()
        completed = 0

        def count(job: Any, result: Any) -> None:
            nonlocal completed
            completed += 1
            if completed == self.jobs:
                finished.set()

        worker.on("completed", count)
        task = asyncio.create_task(worker.run())
        try:
            try:
                await asyncio.wait_for(finished.wait(), self.timeout)
            except TimeoutError:
                _log(f"  ours: timed out after {self.timeout:.0f}s "
                     f"({completed}/{self.jobs} done)")
                return None
            return self.jobs / (time.perf_counter() - started)
        finally:
            await _close_within(worker.close(10), 15, "ours")
            await _close_within(task, 15, "ours run()")

    async def _run_bullmq(self, client: aioredis.Redis, prefix: str,
                          concurrency: int) -> Rate:
        async def noop(job: Any, token: str) -> None:
            return None

        started = time.perf_counter()
        worker = bullmq.Worker(QUEUE, noop, {"connection": self.url, "prefix": prefix,
                                             "concurrency": concurrency})  # autoruns
        try:
            return await self._timed(client, prefix, started, "bullmq")
        finally:
            await _close_within(worker.close(), 15, "bullmq")

    async def _run_node(self, client: aioredis.Redis, prefix: str, concurrency: int) -> Rate:
        assert self.node is not None
        spec = {"queue": QUEUE, "count": self.jobs, "concurrency": concurrency,
                "timeoutMs": int(self.timeout * 1000)}
        try:
            out = await self.node.arun_node("bench-worker.js", [self.url, prefix],
                                            self.timeout + 30, stdin=spec,
                                            modules=self.node_modules)
        except self.node.NodeHarnessError as exc:
            _log(f"  node: {str(exc).splitlines()[0]}")
            return None
        rate = out.get("jobsPerSec")
        return float(rate) if rate is not None else None

    async def latency(self, jobs: int, interval_s: float, concurrency: int) -> dict[str, Any]:
        """Enqueue→start latency of an idle engine Worker (ms percentiles)."""
        from newsletter_queue.engine import Worker

        prefix = f"nlqbl-{uuid.uuid4().hex[:12]}"
        loop = asyncio.get_running_loop()
        samples: list[float] = []
        warm = asyncio.Event()
        done = asyncio.Event()

        async def record(job: Any) -> None:
            now = time.time()
            data = job.data
            if data.get("warmup"):
                warm.set()
                return
            samples.append((now - float(data["t"])) * 1000)
            if len(samples) >= jobs:
                done.set()

        client = aioredis.Redis.from_url(self.url, decode_responses=True)
        settings = load_settings(redis_url=self.url, key_prefix=prefix)
        worker = Worker(QUEUE, record, settings=settings, concurrency=concurrency)
        task = asyncio.create_task(worker.run())
        try:
            queue = bullmq.Queue(QUEUE, {"connection": client, "prefix": prefix})
            await queue.add("warmup", {"warmup": True}, {})
            await asyncio.wait_for(warm.wait(), 30)
            # Measure an idle worker: the warm-up job is finished, the worker waits.
            await asyncio.wait_for(_wait_completed(client, prefix, 1), 30)
            producer = threading.Thread(
                target=lambda: asyncio.run(_produce(self.url, prefix, jobs, interval_s)),
                name="latency-producer", daemon=True)
            producer.start()
            await asyncio.wait_for(done.wait(), self.timeout)
            await loop.run_in_executor(None, producer.join, 30)
        finally:
            await _close_within(worker.close(10), 15, "ours")
            await _close_within(task, 15, "ours run()")
            await delete_prefix(client, prefix)
            await client.aclose()
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return {"p50": round(statistics.median(samples), 3), "p99": round(cuts[98], 3),
                "max": round(max(samples), 3), "jobs": len(samples),
                "interval_ms": interval_s * 1000, "concurrency": concurrency}


async def _produce(url: str, prefix: str, jobs: int, interval_s: float) -> None:
    """Add ``jobs`` jobs on a fixed schedule (one every ``interval_s``), stamped at add."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        queue = bullmq.Queue(QUEUE, {"connection": client, "prefix": prefix})
        origin = time.perf_counter()
        for i in range(jobs):
            delay = origin + i * interval_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule, not a settle delay
            await queue.add("latency", {"t": time.time(), "i": i}, {})
    finally:
        await client.aclose()


async def _close_within(awaitable: Awaitable[Any], limit_s: float, what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, limit_s)
    except TimeoutError:
        _log(f"  {what}: close did not finish within {limit_s:.0f}s")
    except Exception as exc:  # report and go on: one bad close must not end the session
        _log(f"  {what}: close failed: {type(exc).__name__}: {exc}")


def _median(values: list[Rate]) -> Rate:
    real = [v for v in values if v is not None]
    return round(statistics.median(real), 1) if real else None


def _ratio(a: Rate, b: Rate) -> float | None:
    return round(a / b, 2) if a is not None and b else None


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url = _redis_url()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    impls = [i for i in IMPLS if not getattr(args, f"skip_{i}")]
    bench = Bench(url=url, jobs=args.jobs, timeout=args.timeout)
    node_note = "skipped (--skip-node)"
    if "node" in impls:
        harness = _load_node_harness()
        reason = harness.node_available()
        if reason is not None:
            _log(f"node runs skipped: {reason}")
            node_note = reason
            impls.remove("node")
        else:
            bench.node = harness
            bench.node_modules = harness.ensure_node_modules()  # fails loudly
            node_note = f"bullmq {harness.pinned_bullmq_version()} on node"
    if "ours" in impls and not _engine_ready():
        raise SystemExit("newsletter_queue.engine.Worker is not available; run with --skip-ours")

    _log(f"Redis {mask_url(url)}; {args.jobs} jobs; concurrency {levels}; "
         f"{args.rounds} rounds; implementations {impls}")
    for impl in impls:
        bench.runs[impl] = {str(c): [] for c in levels}
    for rnd in range(1, args.rounds + 1):
        for c in levels:
            for impl in impls:
                rate = await bench.run_once(impl, c)
                bench.runs[impl][str(c)].append(rate)
                shown = f"{rate:,.0f} jobs/s" if rate is not None else "no result"
                _log(f"round {rnd}/{args.rounds} c={c} {impl}: {shown}")

    def figures(impl: str) -> dict[str, Rate] | None:
        if impl not in bench.runs:
            return None
        return {c: _median(v) for c, v in bench.runs[impl].items()}

    result: dict[str, Any] = {"jobs": args.jobs}
    for impl in IMPLS:
        result[impl] = figures(impl)
    latency: dict[str, Any] = {"p50": None, "p99": None}
    if "ours" in impls and args.latency_jobs > 0:
        _log(f"latency: {args.latency_jobs} jobs {args.latency_interval_ms} ms apart, "
             f"idle worker at concurrency {args.latency_concurrency}")
        try:
            latency = await bench.latency(args.latency_jobs, args.latency_interval_ms / 1000,
                                          args.latency_concurrency)
        except TimeoutError:
            _log("latency: timed out")
        _log(f"latency: {latency}")
    result["latency_ms"] = {"p50": latency["p50"], "p99": latency["p99"]}
    result["latency_detail"] = {k: v for k, v in latency.items() if k not in ("p50", "p99")}
    ours = result["ours"] or {}
    result["ratios"] = {
        "ours/bullmq": {c: _ratio(ours.get(c), (result["bullmq"] or {}).get(c))
                        for c in map(str, levels)},
        "ours/node": {c: _ratio(ours.get(c), (result["node"] or {}).get(c))
                      for c in map(str, levels)},
    }
    result["runs"] = {impl: {c: [round(r, 1) if r is not None else None for r in v]
                             for c, v in per.items()} for impl, per in bench.runs.items()}
    result["rounds"] = args.rounds
    result["node_runtime"] = node_note
    result["event_loop"] = eventloop.loop_name()
    result["bullmq_py"] = bullmq.__version__
    result["redis"] = mask_url(url)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,10,100",
                        help="comma-separated concurrency levels")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one run may take before it is recorded as null")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--skip-bullmq", action="store_true")
    parser.add_argument("--skip-node", action="store_true")
    parser.add_argument("--latency-jobs", type=int, default=1000,
                        help="jobs for the enqueue→start latency (0 skips it)")
    parser.add_argument("--latency-interval-ms", type=float, default=2.0)
    parser.add_argument("--latency-concurrency", type=int, default=10)
    args = parser.parse_args()
    if args.jobs < 1 or args.rounds < 1:
        parser.error("--jobs and --rounds must be at least 1")
    print(json.dumps(eventloop.run(main_async(args), load_settings().event_loop)))


if __name__ == "__main__":
    main()
