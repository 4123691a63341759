"""Benchmark: send a campaign to a large recipient CSV, against a real Redis.

    python bench/campaign_send.py [--rows 1000000] [--batch-size 100] [--timeout 300]

Writes a CSV of ``--rows`` data rows (email, name and two personalisation columns; about
1 % of the rows repeat an earlier address in other case, a few are bad — the file of
``bench/recipients.py``) into a temporary directory. A child process then does what the
CLI or the HTTP API does with an uploaded file: ``manager.campaigns.save`` and
``manager.campaigns.send(..., rows_from_csv(path), partial=True)``, timed together, and
reports its own peak RSS (``VmHWM``), so the parent's generated data does not count.
As a baseline a second child runs ``check_recipients`` and a full ``valid_recipients``
pass over the same file without Redis, so the cost of the Redis part shows as a ratio.

Redis is REDIS_URL, else redis://127.0.0.1:6379; anything but a loopback address or a
unix socket is refused. Every key lives under a prefix of its own, ``bench-send-<random>``,
deleted afterwards with SCAN + UNLINK on that prefix only (never FLUSHDB) — also when the
child fails or is killed at ``--timeout`` (seconds for the whole run). The SQLite store
lives in the temporary directory.

Prints progress on stderr and, as its last stdout line, one JSON object: ``rows``,
``valid``, ``duplicates``, ``bad_rows``, ``batches``, ``queued_jobs``, ``seconds`` (save +
send, in the child), ``peak_rss_mb`` (the child's), ``redis_keys`` and ``redis_mb`` (the
prefix's keys and the sum of their ``MEMORY USAGE``), ``redis_used_memory_delta_mb``
(``INFO memory`` after minus before: other clients of the server move it too),
``check_seconds`` and ``check_peak_rss_mb`` (the baseline child), ``ratio`` (seconds /
check_seconds), ``cpu_seconds`` and ``check_cpu_seconds`` (the children's CPU time, all
threads: steadier than wall time on a busy machine), ``cpu_ratio`` and ``file_mb``.
Exits 1 if the counts differ from what was generated, 2
on timeout. ``--profile FILE`` writes a pyinstrument profile of the send (text) to FILE
(pyinstrument must be installed; it is not a dependency of the project).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/email.py is named like the standard library's ``email`` package: keep this
# directory off sys.path so that ``import email`` (done by the stdlib) finds the real one.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import asyncio
import importlib.util
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import tempfile
import time
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

DEFAULT_URL = "redis://127.0.0.1:6379"
TENANT = "tenant-bench"
CAMPAIGN = "bench-send"


def _recipients_bench() -> ModuleType:
    """``bench/recipients.py`` (its CSV generator and ``peak_rss_mb``), loaded by path."""
    spec = importlib.util.spec_from_file_location(
        "nlq_bench_recipients", Path(__file__).with_name("recipients.py"))
    if spec is None or spec.loader is None:
        raise SystemExit("bench/recipients.py is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loopback_only(url: str) -> str:
    """``url`` if it names this machine (a loopback address or a unix socket); else exit."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return url
    host = parts.hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 6379)}
    except OSError as exc:
        raise SystemExit(f"cannot resolve the Redis host {host!r}: {exc}") from None
    if not host or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                           for a in addresses):
        raise SystemExit(f"refusing to run against {host!r}: this benchmark writes "
                         "a million recipients into Redis, so only a loopback address or "
                         "a unix socket is accepted")
    return url


# --- the children ----------------------------------------------------------------------
async def send_child(path: Path, url: str, prefix: str, state_dir: Path, batch_size: int,
                     profile: bool) -> dict[str, Any]:
    """The measured send; with ``profile`` the pyinstrument text is in ``"profile"``."""
    from newsletter_queue import QueueManager, load_settings
    from newsletter_queue.campaigns.recipients import rows_from_csv
    from newsletter_queue.connection import delete_prefix

    settings = load_settings(redis_url=url, key_prefix=prefix, state_dir=state_dir,
                             embedded_redis="never")
    profiler: Any = None
    if profile:
        from pyinstrument import Profiler
        profiler = Profiler(async_mode="enabled")
    async with QueueManager(settings) as manager:
        try:
            campaigns = manager.campaigns
            if profiler is not None:
                profiler.start()
            started, cpu = time.perf_counter(), time.process_time()
            await campaigns.save(TENANT, CAMPAIGN, subject="News for {{ name }}",
                                 text="Dear {{ name }}, your plan is {{ plan }}.",
                                 from_addr="News <news@example.com>")
            saved = time.perf_counter()
            result = await campaigns.send(TENANT, CAMPAIGN, rows_from_csv(path),
                                          partial=True, batch_size=batch_size)
            done, cpu = time.perf_counter(), time.process_time() - cpu
            report = ""
            if profiler is not None:
                profiler.stop()
                report = profiler.output_text(unicode=True, show_all=False)
            rss = bench.peak_rss_mb()
            stats = await manager.get_queue_stats("email")
            queued = stats.waiting + stats.prioritized + stats.delayed
        except BaseException:
            await delete_prefix(await manager.client(), prefix)
            raise
    return {"valid": result.recipients, "duplicates": result.duplicates,
            "bad_rows": len(result.skipped), "batches": result.batches,
            "queued_jobs": queued, "seconds": round(done - started, 2),
            "cpu_seconds": round(cpu, 2),
            "save_seconds": round(saved - started, 3),
            "send_seconds": round(done - saved, 2), "peak_rss_mb": round(rss, 1),
            **({"profile": report} if profile else {})}


def check_child(path: Path) -> dict[str, Any]:
    """The baseline: what the send did with the file before it was read once (a
    ``check_recipients`` pass, then a ``valid_recipients`` pass), without Redis."""
    from newsletter_queue.campaigns import recipients as rcpt

    source = rcpt.rows_from_csv(path)
    t0, cpu = time.perf_counter(), time.process_time()
    valid = rcpt.check_recipients(source).valid
    if valid != sum(1 for _ in rcpt.valid_recipients(source)):
        raise SystemExit("valid_recipients and check_recipients disagree")
    return {"check_seconds": round(time.perf_counter() - t0, 2),
            "check_cpu_seconds": round(time.process_time() - cpu, 2),
            "check_peak_rss_mb": round(bench.peak_rss_mb(), 1)}


# --- the parent ------------------------------------------------------------------------
def _run_child(args: list[str], deadline: float) -> dict[str, Any]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True,
                          text=True, check=False, timeout=remaining)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"the child {args[:2]} exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _prefix_memory(client: Any, prefix: str) -> tuple[int, int]:
    """How many keys the prefix has and the sum of their ``MEMORY USAGE`` (bytes)."""
    keys = total = 0
    batch: list[str] = []

    def flush() -> int:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        used = sum(int(n or 0) for n in pipe.execute())
        batch.clear()
        return used

    for key in client.scan_iter(f"{prefix}:*", count=2000):
        keys += 1
        batch.append(key)
        if len(batch) >= 1000:
            total += flush()
    if batch:
        total += flush()
    return keys, total


def _delete_prefix(client: Any, prefix: str) -> int:
    """SCAN + UNLINK of ``{prefix}:*`` only."""
    deleted = 0
    batch: list[str] = []
    for key in client.scan_iter(f"{prefix}:*", count=2000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds for the whole run (default 300)")
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile here")
    parser.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["send", "check"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "check":
        print(json.dumps(check_child(args.path)))
        return 0
    if args.child == "send":
        print(json.dumps(asyncio.run(send_child(
            args.path, args.url, args.prefix, args.path.parent, args.batch_size,
            args.child_profile))))
        return 0

    import redis

    deadline = time.monotonic() + args.timeout
    url = loopback_only(os.environ.get("REDIS_URL") or DEFAULT_URL)
    prefix = f"bench-send-{secrets.token_hex(6)}"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.ping()
    try:
        with tempfile.TemporaryDirectory(prefix="nlq-campaign-send-") as tmp:
            path = Path(tmp) / "recipients.csv"
            started = time.perf_counter()
            expected = bench.generate(path, args.rows)
            file_mb = round(path.stat().st_size / 2**20, 1)
            print(f"wrote {args.rows} rows ({file_mb:.0f} MB) in "
                  f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
            baseline = _run_child(["--child", "check", "--path", str(path)], deadline)
            print(f"check + valid_recipients (no Redis): {baseline['check_seconds']}s",
                  file=sys.stderr)
            before = int(client.info("memory")["used_memory"])
            child = ["--child", "send", "--path", str(path), "--url", url,
                     "--prefix", prefix, "--batch-size", str(args.batch_size)]
            if args.profile:
                child.append("--child-profile")
            measured = _run_child(child, deadline)
            if args.profile:
                args.profile.write_text(measured.pop("profile"))
            after = int(client.info("memory")["used_memory"])
            keys, used = _prefix_memory(client, prefix)
            print(f"save + send: {measured['seconds']}s under {prefix}", file=sys.stderr)
    except subprocess.TimeoutExpired:
        print(f"timed out after {args.timeout:.0f}s", file=sys.stderr)
        return 2
    except TimeoutError:
        print(f"timed out after {args.timeout:.0f}s", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        deleted = _delete_prefix(client, prefix)
        print(f"deleted {deleted} keys under {prefix}", file=sys.stderr)
        client.close()
    result = {"rows": args.rows, **measured, "redis_keys": keys,
              "redis_mb": round(used / 2**20, 1),
              "redis_used_memory_delta_mb": round((after - before) / 2**20, 1),
              **baseline, "ratio": round(measured["seconds"] / baseline["check_seconds"], 2),
              "cpu_ratio": round(measured["cpu_seconds"] / baseline["check_cpu_seconds"], 2),
              "file_mb": file_mb}
    print(json.dumps(result))
    found = {"valid": measured["valid"], "duplicates": measured["duplicates"],
             "bad": measured["bad_rows"]}
    if found != expected or measured["queued_jobs"] != measured["batches"]:
        print(f"counts differ: expected {expected}, found {found}, "
              f"{measured['queued_jobs']} jobs queued for {measured['batches']} batches",
              file=sys.stderr)
        return 1
    return 0


bench = _recipients_bench()

if __name__ == "__main__":
    raise SystemExit(main())
