"""The execution ledger: what every worker process did, written outside Redis.

Each worker process under test appends JSON lines to ``{dir}/{pid}.jsonl`` with one
unbuffered ``write`` per record (``O_APPEND``), so a ``SIGKILL`` loses at most the
line being written — which the reader skips. Records:

- ``start``: a processor began an execution (queue, job id, attempt, stalled counter);
- ``end``: that execution returned (``ok``) or raised (``err`` = exception type);
- ``done``: the worker recorded the completion in Redis (its ``completed`` hook, which
  runs once ``moveToFinished`` has been answered);
- ``failed``: the worker recorded a failed attempt (its ``failed`` hook; ``final``);
- ``stalled``: this worker's stalled check moved a job back to wait (its ``stalled`` hook).

Times are wall-clock seconds (``time.time()``), comparable across processes.

What counts as a *duplicate execution* (``duplicates``): an execution of a job, beyond
its first, whose preceding execution did not hand the job back by raising — i.e. the
preceding one was interrupted (no ``end``: killed, or cancelled at shutdown) or had
returned successfully (its result was lost, e.g. by a Redis restart). A re-execution
after the processor raised (a retry with backoff, a job parking itself in *delayed*)
is an ordinary *retry*, counted apart.

What a killed worker *held* (``held_by``): the executions it never finished
(``interrupted_by``) and those whose processor had returned but whose completion it had
not yet seen acknowledged by Redis (``unacknowledged_by``: an ``end`` with ``ok`` and no
``done`` from that process). Either kind may run again — the second is the at-least-once
window between a processor returning and ``moveToFinished`` being answered; when the
kill fell after Redis had written the completion but before the hook wrote ``done``, the
job does not run again, so ``held_by`` is an upper bound.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CANCELLED = ("CancelledError",)


class LedgerWriter:
    """Appends records for one process (used inside the worker under test)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        self._fd = os.open(directory / f"{self.pid}.jsonl",
                           os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._seq = 0

    def next_execution(self) -> int:
        self._seq += 1
        return self._seq

    def write(self, event: str, **fields: Any) -> None:
        record = {"e": event, "p": self.pid, "t": time.time(), **fields}
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class Execution:
    """One run of a processor for one job."""

    queue: str
    job: str
    pid: int
    seq: int
    attempt: int
    stalled_counter: int
    start: float
    end: float | None = None
    ok: bool | None = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.queue, self.job)

    @property
    def interrupted(self) -> bool:
        """Never ended, or cancelled (killed, abandoned at shutdown)."""
        return self.end is None or (self.error or "") in _CANCELLED

    def running_at(self, t: float) -> bool:
        return self.start <= t and (self.end is None or self.end > t)


@dataclass
class Duplicates:
    duplicate_executions: int = 0  # see the module docstring
    completed_twice: int = 0  # executions that returned ok after one that returned ok
    completed_twice_jobs: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0  # re-executions after the previous execution raised
    jobs: list[str] = field(default_factory=list)  # jobs with a duplicate execution


@dataclass
class LedgerView:
    executions: list[Execution]
    done: dict[tuple[str, str], list[float]]  # completion hook times per job
    failed: dict[tuple[str, str], list[dict[str, Any]]]
    broken_lines: int
    stalled: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    acknowledged: set[tuple[int, str, str]] = field(default_factory=set)  # (pid, queue, job)

    def first_stalled_after(self, key: tuple[str, str], t: float) -> float | None:
        """When a stalled check first moved the job back to wait after ``t``."""
        later = [s for s in self.stalled.get(key, []) if s >= t]
        return min(later) if later else None

    def by_job(self, queue: str | None = None) -> dict[tuple[str, str], list[Execution]]:
        out: dict[tuple[str, str], list[Execution]] = defaultdict(list)
        for ex in self.executions:
            if queue is None or ex.queue == queue:
                out[ex.key].append(ex)
        for runs in out.values():
            runs.sort(key=lambda e: e.start)
        return out

    def of_pid(self, pid: int) -> list[Execution]:
        return [e for e in self.executions if e.pid == pid]

    def interrupted_by(self, pid: int) -> list[Execution]:
        """Executions of ``pid`` that never ended (what was in flight when it died)."""
        return [e for e in self.executions if e.pid == pid and e.end is None]

    def unacknowledged_by(self, pid: int) -> list[Execution]:
        """Executions of ``pid`` that returned ok without ``pid`` recording the completion."""
        return [e for e in self.executions if e.pid == pid and e.end is not None and e.ok
                and (pid, e.queue, e.job) not in self.acknowledged]

    def held_by(self, pid: int) -> list[Execution]:
        """What ``pid`` held when it died: interrupted or not yet acknowledged."""
        return self.interrupted_by(pid) + self.unacknowledged_by(pid)

    def first_done_after(self, key: tuple[str, str], t: float) -> float | None:
        later = [d for d in self.done.get(key, []) if d >= t]
        return min(later) if later else None

    def done_after(self, t: float) -> list[float]:
        return sorted(d for times in self.done.values() for d in times if d >= t)

    def duplicates(self, keys: Iterable[tuple[str, str]] | None = None) -> Duplicates:
        wanted = set(keys) if keys is not None else None
        result = Duplicates()
        for key, runs in self.by_job().items():
            if wanted is not None and key not in wanted:
                continue
            dup = False
            for previous, current in itertools.pairwise(runs):
                if previous.interrupted or previous.ok:
                    result.duplicate_executions += 1
                    dup = True
                    if previous.ok and current.ok:
                        result.completed_twice += 1
                        result.completed_twice_jobs.append(key)
                else:
                    result.retries += 1
            if dup:
                result.jobs.append(key[1])
        return result


def read_records(directory: Path) -> tuple[list[dict[str, Any]], int]:
    """Every process's records in file order, and how many lines were torn (skipped)."""
    records: list[dict[str, Any]] = []
    broken = 0
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                broken += 1
    return records, broken


def read_ledger(directory: Path) -> LedgerView:
    """Read every process's records (a torn last line is counted, not fatal)."""
    executions: dict[tuple[int, int], Execution] = {}
    ends: list[dict[str, Any]] = []
    done: dict[tuple[str, str], list[float]] = defaultdict(list)
    failed: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    stalled: dict[tuple[str, str], list[float]] = defaultdict(list)
    acknowledged: set[tuple[int, str, str]] = set()
    records, broken = read_records(directory)
    for rec in records:
        kind = rec.get("e")
        if kind == "start":
            executions[(rec["p"], rec["x"])] = Execution(
                rec["q"], rec["j"], rec["p"], rec["x"], rec["a"], rec.get("stc", 0),
                rec["t"])
        elif kind == "end":
            ends.append(rec)
        elif kind == "done":
            done[(rec["q"], rec["j"])].append(rec["t"])
            acknowledged.add((rec["p"], rec["q"], rec["j"]))
        elif kind == "failed":
            failed[(rec["q"], rec["j"])].append(rec)
        elif kind == "stalled":
            stalled[(rec["q"], rec["j"])].append(rec["t"])
    for rec in ends:
        ex = executions.get((rec["p"], rec["x"]))
        if ex is not None:
            ex.end, ex.ok, ex.error = rec["t"], bool(rec.get("ok")), rec.get("err")
    return LedgerView(sorted(executions.values(), key=lambda e: e.start), dict(done),
                      dict(failed), broken, dict(stalled), acknowledged)
