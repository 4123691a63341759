"""Processes of a chaos scenario: private redis-servers, the SMTP sink, worker and API
processes — each started on loopback, observed from outside, and killed with the stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import redis.asyncio as aioredis

from newsletter_queue.embedded import _free_port, find_server_binary

REPO = Path(__file__).resolve().parents[2]
QUEUES = ("email", "analytics")


async def wait_until(probe: Callable[[], Awaitable[Any]], *, timeout: float,
                     interval: float = 0.05, message: str = "condition") -> Any:
    """Poll ``probe`` until it returns a truthy value; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {message}")
        await asyncio.sleep(interval)


class Processes:
    """Every subprocess of a stage; ``close`` kills those still running."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []

    def spawn(self, args: Sequence[str], *, log: Path | None = None,
              env: dict[str, str] | None = None, stdout: int | None = subprocess.DEVNULL
              ) -> subprocess.Popen[bytes]:
        out: IO[bytes] | int = subprocess.DEVNULL
        if log is not None:
            handle = log.open("ab")
            self._files.append(handle)
            out = handle
        proc = subprocess.Popen(list(args), cwd=REPO, env=env, stdout=stdout, stderr=out,
                                start_new_session=True)
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        for handle in self._files:
            handle.close()


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The exit code once ``proc`` ends, or ``None`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.02)
    return proc.returncode


class RedisServer:
    """A private redis-server on a fixed loopback port and data directory (restartable)."""

    def __init__(self, procs: Processes, directory: Path, *extra: str) -> None:
        self.procs = procs
        self.binary = find_server_binary().path
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> None:
        args = [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--protected-mode", "yes", *self.extra]
        self.proc = self.procs.spawn(args, log=self.dir / "server.log",
                                     stdout=subprocess.DEVNULL)

    async def start(self, timeout: float = 30.0) -> float:
        """Start (or restart on the same port and directory); returns when it PONGs."""
        self._spawn()
        await wait_until(self.ready, timeout=timeout, interval=0.01,
                         message=f"redis-server on port {self.port}")
        return time.time()

    async def ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 0.5)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"*1\r\n$4\r\nPING\r\n")
            reply = await asyncio.wait_for(reader.read(64), 0.5)
            return reply.startswith(b"+PONG")  # not -LOADING while the AOF is read
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    def kill(self) -> float:
        """SIGKILL: no shutdown, no final fsync."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        return time.time()

    async def stop(self) -> float:
        """SIGTERM: an orderly shutdown (the AOF, if on, is flushed)."""
        assert self.proc is not None
        self.proc.terminate()
        if await wait_exit(self.proc, 30) is None:
            raise RuntimeError(f"redis-server on port {self.port} did not stop")
        return time.time()

    def client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.url, decode_responses=True,
                                       socket_connect_timeout=2, socket_timeout=10)


@dataclass
class SinkStats:
    counts: dict[str, int]
    accepted: int

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.counts.values() if n > 1)

    def missing(self, expected: Iterable[str]) -> int:
        return sum(1 for e in expected if self.counts.get(e.lower(), 0) == 0)


class Sink:
    """The dev SMTP sink in its own process; ``stop`` returns what it received."""

    def __init__(self, procs: Processes, directory: Path) -> None:
        self.procs = procs
        self.stats_file = directory / "sink-stats.json"
        self.log = directory / "sink.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = self.procs.spawn(
            [sys.executable, "-m", "newsletter_queue.services.sink", "--port", "0",
             "--stats-file", str(self.stats_file)], log=self.log, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        self.port = int(json.loads(line)["port"])

    async def stop(self) -> SinkStats:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        if await wait_exit(self.proc, 30) is None:
            raise RuntimeError("the SMTP sink did not stop")
        stats = json.loads(self.stats_file.read_text(encoding="utf-8"))
        return SinkStats({k.lower(): int(v) for k, v in stats["counts"].items()},
                         int(stats["accepted"]))


class WorkerProcess:
    """One ``tests.chaos.worker_entry`` process; its stderr goes to ``log``."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log
        self.spawned_at = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> float:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return time.time()

    def terminate(self) -> float:
        self.proc.send_signal(signal.SIGTERM)
        return time.time()

    async def wait_exit(self, timeout: float) -> int | None:
        return await wait_exit(self.proc, timeout)

    def log_lines(self) -> list[str]:
        if not self.log.exists():
            return []
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()

    def started_at(self, queues: Iterable[str] = QUEUES) -> float | None:
        """When the last of ``queues`` logged "started" (wall clock), if all did."""
        stamps = []
        for queue in queues:
            found = [_stamp(line) for line in self.log_lines()
                     if f"started on queue {queue} " in line]
            if not found or found[0] is None:
                return None
            stamps.append(found[0])
        return max(stamps) if stamps else None

    async def wait_started(self, queues: Iterable[str] = QUEUES, timeout: float = 60) -> None:
        names = list(queues)

        async def started() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.pid} exited ({self.proc.returncode}): "
                                   + "\n".join(self.log_lines()[-20:]))
            text = "\n".join(self.log_lines())
            return all(f"started on queue {q} " in text for q in names)

        await wait_until(started, timeout=timeout, message=f"worker {self.pid} to start")


class ApiProcess:
    """The dev API served by uvicorn (``tests.chaos.api_entry``)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, http: httpx.AsyncClient, timeout: float = 60) -> None:
        async def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited ({self.proc.returncode}): "
                                   + self.log.read_text(errors="replace")[-2000:])
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(answers, timeout=timeout, message="the dev API to answer")


def count_lines_between(lines: Sequence[str], start: float, end: float, *,
                        records_only: bool = False) -> int:
    """Log lines written in [start, end] (wall-clock seconds), by their ``asctime``
    stamp; a line without one (a traceback) belongs to the record above it, and is not
    counted with ``records_only``."""
    count = 0
    current: float | None = None
    for line in lines:
        stamp = _stamp(line)
        if stamp is not None:
            current = stamp
        elif records_only:
            continue
        if current is not None and start <= current <= end:
            count += 1
    return count


def _stamp(line: str) -> float | None:
    try:
        return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(
            line[20:23]) / 1000
    except ValueError:
        return None
