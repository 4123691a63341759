"""Benchmark: read, check and batch a large recipient CSV (no Redis).

    python bench/recipients.py [--rows 1000000] [--batch-size 100]

Writes a CSV of ``--rows`` data rows (email, name and two personalisation columns; about
1 % of the rows repeat an earlier address in other case, a few are bad) into a temporary
directory. A child process then does what a campaign send does with such a file: one
``check_recipients`` pass, then a full pass of ``valid_recipients`` grouped into batches
of ``--batch-size`` wire dicts, each measured with ``payload_size`` as the batch job's
data. The child reports its own peak RSS (``VmHWM``), so the parent's generated data does
not count. As a baseline the same file is read once with a plain ``csv.reader``.

Prints progress on stderr and, as its last stdout line, one JSON object: ``rows``,
``valid``, ``duplicates``, ``errors``, ``batches``, ``seconds`` (check + batching, in the
child), ``check_seconds``, ``batch_seconds``, ``peak_rss_mb`` (the child's),
``csv_reader_seconds`` and ``ratio`` (seconds / csv_reader_seconds). Exits 1 if the counts
differ from what was generated.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/email.py is named like the standard library's ``email`` package: keep this
# directory off sys.path so that ``import email`` (done by the stdlib) finds the real one.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import argparse
import csv
import json
import subprocess
import tempfile
import time
from itertools import islice
from typing import Any

BAD_EVERY = 250_000  # one bad email and one short row per this many rows


def generate(path: Path, rows: int) -> dict[str, int]:
    """Write the CSV; return the counts a correct reader must find."""
    expected = {"valid": 0, "duplicates": 0, "bad": 0}
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "plan", "city"])
        for i in range(rows):
            if i % BAD_EVERY == 7:
                writer.writerow([f"broken{i}.example.com", f"Broken {i}", "pro", "Oslo"])
                expected["bad"] += 1
            elif i % BAD_EVERY == 8:
                writer.writerow([f"short{i}@example.com", "Short"])
                expected["bad"] += 1
            elif i % 100 == 99:  # an earlier row's address, shouted
                writer.writerow([f"USER{i - 50}@EXAMPLE.COM", f"Again {i}", "free", "Rome"])
                expected["duplicates"] += 1
            else:
                writer.writerow([f"user{i}@example.com", f"User {i}",
                                 "pro" if i % 3 else "free", "Paris, France"])
                expected["valid"] += 1
    return expected


def csv_reader_seconds(path: Path) -> float:
    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        for _ in csv.reader(handle):
            pass
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(path: Path, batch_size: int) -> dict[str, Any]:
    """The measured work, run in its own process."""
    from newsletter_queue.campaigns.recipients import (
        check_recipients,
        rows_from_csv,
        valid_recipients,
    )
    from newsletter_queue.jobs import payload_size

    rows = rows_from_csv(path)
    started = time.perf_counter()
    check = check_recipients(rows)
    checked = time.perf_counter()
    batches = largest = 0
    stream = valid_recipients(rows)
    while batch := list(islice(stream, batch_size)):
        data = {"campaignId": "bench", "tenantId": "bench", "recipients": batch,
                "batchSize": batch_size}
        largest = max(largest, payload_size(data))
        batches += 1
    done = time.perf_counter()
    return {"valid": check.valid, "duplicates": check.duplicates, "errors": len(check.errors),
            "errors_truncated": check.errors_truncated, "batches": batches,
            "largest_batch_bytes": largest, "seconds": round(done - started, 2),
            "check_seconds": round(checked - started, 2),
            "batch_seconds": round(done - checked, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batch_size)))
        return 0
    with tempfile.TemporaryDirectory(prefix="nlq-recipients-") as tmp:
        path = Path(tmp) / "recipients.csv"
        started = time.perf_counter()
        expected = generate(path, args.rows)
        print(f"wrote {args.rows} rows ({path.stat().st_size / 2**20:.0f} MB) in "
              f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
        baseline = csv_reader_seconds(path)
        print(f"csv.reader pass: {baseline:.2f}s", file=sys.stderr)
        proc = subprocess.run([sys.executable, __file__, "--child", str(path),
                               "--batch-size", str(args.batch_size)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        file_mb = round(path.stat().st_size / 2**20, 1)
    result = {"rows": args.rows, **measured, "csv_reader_seconds": round(baseline, 2),
              "ratio": round(measured["seconds"] / baseline, 1), "file_mb": file_mb}
    print(json.dumps(result))
    found = {"valid": measured["valid"], "duplicates": measured["duplicates"],
             "bad": measured["errors"]}
    if found != expected:
        print(f"counts differ: expected {expected}, found {found}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
