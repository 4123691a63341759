"""Connection loss: CLIENT KILL of our own connections, and a Redis restart.

The restart test runs its own ``redis-server`` on a free loopback port — the shared
server is never restarted.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from newsletter_queue.embedded import find_server_binary
from newsletter_queue.engine import Job, Worker
from newsletter_queue.engine.health import PROBE_FIRST_S, PROBE_MAX_S, REMINDER_EVERY_S
from newsletter_queue.errors import EmbeddedServerError
from tests.conftest import make_settings
from tests.integration.engine.conftest import QUEUE, Recorder
from tests.support.helpers import wait_for


async def _echo(job: Job) -> int:
    return int(job.data["i"])


async def test_worker_recovers_when_its_connections_are_killed(
    bull: Queue, make_worker: Callable[..., Worker], redis_client: aioredis.Redis
) -> None:
    worker = make_worker(_echo, concurrency=3)
    events = Recorder(worker)
    worker.start()
    await bull.add("echo", {"i": 1})
    await events.wait("completed")
    await events.wait("drained")  # about to block in BZPOPMIN on its own connection

    async def blocked() -> list[dict[str, str]]:
        clients = await redis_client.client_list()
        ours = [c for c in clients if c.get("name") == worker.client_name]
        return ours if any(c.get("cmd") == "bzpopmin" for c in ours) else []

    ours = await wait_for(blocked, timeout=30, message="the worker to block in BZPOPMIN")
    for client in ours:  # only this worker's connections, never anyone else's
        await redis_client.client_kill_filter(_id=client["id"])

    await bull.add("echo", {"i": 2})
    await bull.add("echo", {"i": 3})
    done = await events.wait("completed", 3, timeout=30)
    assert sorted(r for _, r in done) == [1, 2, 3]
    assert events.of("error") == []


def _most_probes(seconds: float) -> int:
    """The most probes ``Health`` can make in an outage of ``seconds``: each one waits at
    least 0.8 × its delay (the jitter's low end), the delay doubling from
    ``PROBE_FIRST_S`` up to ``PROBE_MAX_S`` — however fast or slow the machine."""
    probes, at, delay = 0, 0.0, PROBE_FIRST_S
    while (at := at + 0.8 * delay) <= seconds:
        probes += 1
        delay = min(2 * delay, PROBE_MAX_S)
    return probes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throw-away redis-server on one loopback port, restartable on the same port."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
             "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError(f"private redis-server did not start on port {self.port}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(30)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    try:
        binary = find_server_binary()
    except EmbeddedServerError as exc:
        print(f"skipping: no redis-server binary ({exc})")
        pytest.skip(f"no redis-server binary: {exc}")
    server = PrivateRedis(binary.path, tmp_path)
    server.start()
    yield server
    server.stop()


async def test_worker_survives_a_redis_restart_with_bounded_retries(
    private_redis: PrivateRedis, prefix: str, tmp_path: Path,
    make_worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(redis_url=private_redis.url, key_prefix=prefix,
                             state_dir=tmp_path)
    worker = make_worker(_echo, settings=settings, concurrency=2, stalled_interval_ms=500)
    events = Recorder(worker)
    producer = aioredis.Redis.from_url(private_redis.url, decode_responses=True)
    bull = Queue(QUEUE, {"connection": producer, "prefix": prefix})
    try:
        worker.start()
        await bull.add("echo", {"i": 1})
        await events.wait("completed")

        with caplog.at_level(logging.INFO, logger="newsletter_queue.engine"):
            stopped_at = time.monotonic()
            private_redis.stop()
            health = worker.health
            assert health is not None
            await wait_for(lambda: _is(not health.is_up), timeout=30,
                           message="the worker to notice Redis is gone")
            # Let it back off for a while: probes 0.1, 0.2, 0.4, 0.8 s apart (± 20 %).
            await wait_for(lambda: _is(health.probes >= 4), timeout=30,
                           message="four probes")
            four_probes_in = time.monotonic() - stopped_at
            private_redis.start()
            back_at = time.monotonic()
            await wait_for(lambda: _is(health.is_up), timeout=30,
                           message="the worker to notice Redis is back")
            outage = time.monotonic() - stopped_at
            await producer.connection_pool.disconnect()  # the producer's sockets died too
            await bull.add("echo", {"i": 2})
            await events.wait("completed", 2, timeout=30)
        resumed_in = time.monotonic() - back_at
        # Noticed by the next probe (at most 1.2 × PROBE_MAX_S away once capped), not by
        # anything slower; generous for a loaded machine.
        assert resumed_in < 6 * PROBE_MAX_S, resumed_in
        # Bounded retries: a probe per backoff step, not a tight loop. Both bounds hold
        # on any machine: four probes cannot come sooner than their backoff allows, and
        # the outage held no more probes than the capped backoff fits into its length.
        assert four_probes_in >= 0.8 * PROBE_FIRST_S * (1 + 2 + 4 + 8), four_probes_in
        assert health.probes <= _most_probes(outage), (health.probes, outage)
        assert health.outages == 1
        lines = [r for r in caplog.records if r.name.startswith("newsletter_queue.engine")
                 and r.levelno >= logging.WARNING]
        # One warning, plus a reminder per REMINDER_EVERY_S of outage: never a line per
        # failed command or probe.
        most_lines = 3 + int(outage // REMINDER_EVERY_S)
        assert 1 <= len(lines) <= most_lines, [r.getMessage() for r in lines]
        assert any("Redis unavailable" in r.getMessage() for r in lines)
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        await producer.aclose()


async def _is(value: bool) -> bool:
    return value
