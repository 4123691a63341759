"""Benchmark: one campaign into the local SMTP sink with one worker process.

    python bench/email.py [--recipients 20000] [--batch-size 100]
    python bench/email.py --suppression-effect [--listed 100000] [--rounds 2]

The dev SMTP sink runs in its own process (``python -m newsletter_queue.services.sink``)
and counts what it accepts per recipient; this process runs the email and analytics
workers (queue concurrency from the settings) against REDIS_URL or the server the
project would pick, under a throw-away key prefix and a temporary SQLite store. Timing
runs from the moment the workers start until the ledger shows every recipient sent.

Prints progress on stderr and, as its last stdout line, one JSON object:
``{"recipients": N, "delivered": N, "duplicates": D, "missing": M, "seconds": S,
"emails_per_s": E}`` — delivered, duplicates and missing are counted at the sink.

``--suppression-effect`` measures what the suppression check costs: runs with the
check switched off and runs with it on against a list of ``--listed`` other addresses of
the tenant (none of them a recipient, so both send the same mail), interleaved
``--rounds`` times, and prints ``{"without": [emails/s…], "with": […], "ratio": R}`` —
``ratio`` is the median with the check over the median without it (1.0 = free).
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
import os
import signal
import statistics
import subprocess
import tempfile
import time
import uuid

from newsletter_queue import QueueManager, load_settings
from newsletter_queue.connection import delete_prefix
from newsletter_queue.launch import WorkerServices
from newsletter_queue.services.send_ledger import CampaignLedger
from newsletter_queue.services.store import CampaignRecord
from newsletter_queue.system import System


def _start_sink(stats_file: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter_queue.services.sink", "--port", "0",
         "--stats-file", str(stats_file)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(json.loads(proc.stdout.readline())["port"])
    return proc, port


async def run(recipients: int, batch_size: int, timeout_s: float,
              listed: int | None = 0) -> dict[str, float | int]:
    """One campaign; ``listed`` addresses (not recipients) on the tenant's suppression list
    first, or ``None``: the suppression check switched off."""
    workdir = Path(tempfile.mkdtemp(prefix="nlq-bench-email-"))
    stats_file = workdir / "sink.json"
    sink, port = _start_sink(stats_file)
    prefix = f"nlqbench-{uuid.uuid4().hex[:8]}"
    settings = load_settings(key_prefix=prefix, state_dir=workdir,
                             emails_per_second=1_000_000,
                             emails_per_second_per_tenant=1_000_000)
    services = await WorkerServices(settings, smtp_url=f"smtp://127.0.0.1:{port}").open()
    manager = QueueManager(settings)
    system = System(settings, shutdown_timeout=10)
    try:
        assert services.store is not None
        await services.store.upsert_campaign(CampaignRecord(
            tenant_id="bench", campaign_id="c1", subject="Issue #1 for {{ name }}",
            html="<h1>Hello {{ name }}</h1><p>Plan: {{ personalizations.plan }}</p>",
            text="Hello {{ name }}, plan {{ personalizations.plan }}",
            from_addr="Bench <bench@example.com>"))
        rows = [{"email": f"user{i}@example.com", "name": f"User {i}",
                 "personalizations": {"plan": "pro" if i % 2 else "free"}}
                for i in range(recipients)]
        if listed:
            for start in range(0, listed, 10_000):
                await services.store.suppress("bench", [
                    f"listed{i}@example.org" for i in range(start, min(start + 10_000, listed))],
                    "manual")
        await manager.schedule_batch_email_sending("c1", "bench", rows, batch_size)
        print(f"enqueued {recipients} recipients; sink on port {port}; Redis {manager.url}",
              file=sys.stderr)
        ledger = CampaignLedger(await manager.client(), prefix, "bench", "c1")
        started = time.perf_counter()
        registry = services.registry()
        if listed is None:
            assert services.email is not None
            services.email.suppressions = None  # the check switched off
        workers = system.start_workers(registry, ["email", "analytics"])
        services.attach_hooks(workers)
        last = -1
        while True:
            counts = await ledger.counts()
            done = counts.sent + counts.bounced
            if done >= recipients:
                break
            if time.perf_counter() - started > timeout_s:
                print(f"timed out after {timeout_s}s with {done} sent", file=sys.stderr)
                break
            if done // 2000 != last // 2000:
                print(f"  {done} sent after {time.perf_counter() - started:.1f}s",
                      file=sys.stderr)
            last = done
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        await system.stop()
        await services.close()
        await delete_prefix(await manager.client(), prefix)
        await manager.close()
        sink.send_signal(signal.SIGTERM)
        sink.wait(30)
    stats = json.loads(stats_file.read_text())
    counts = stats["counts"]
    expected = {f"user{i}@example.com" for i in range(recipients)}
    delivered = sum(1 for e in expected if counts.get(e, 0) >= 1)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    return {"recipients": recipients, "delivered": delivered, "duplicates": duplicates,
            "missing": recipients - delivered, "seconds": round(seconds, 3),
            "emails_per_s": round(delivered / seconds, 1) if seconds else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--suppression-effect", action="store_true",
                        help="compare runs without and with the suppression check")
    parser.add_argument("--listed", type=int, default=100_000,
                        help="addresses on the suppression list in the runs with the check")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not args.suppression_effect:
        print(json.dumps(asyncio.run(run(args.recipients, args.batch_size, args.timeout))))
        return
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.rounds):
        for label, listed in (("without", None), ("with", args.listed)):
            result = asyncio.run(run(args.recipients, args.batch_size, args.timeout, listed))
            if result["missing"]:
                raise SystemExit(f"{label}: {result['missing']} recipients missing")
            rates[label].append(float(result["emails_per_s"]))
    print(json.dumps({**rates, "listed": args.listed, "recipients": args.recipients,
                      "ratio": round(statistics.median(rates["with"])
                                     / statistics.median(rates["without"]), 3)}))


if __name__ == "__main__":
    main()
