"""The installed ``nlq`` as real subprocesses: read and admin commands, the ``api``
server and a ``worker`` process that processes jobs and stops on SIGTERM."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

NLQ = Path(sys.executable).parent / "nlq"


@pytest.fixture
def env(redis_url: str, prefix: str, tmp_path: Path, redis_client: Any) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NLQ_")}
    base.update(REDIS_URL=redis_url, NLQ_KEY_PREFIX=prefix, NLQ_STATE_DIR=str(tmp_path),
                COLUMNS="200")
    return base


def run(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(NLQ), *args], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result


@pytest.mark.timeout(600)  # eight CLI runs of up to 60 s each
def test_read_and_admin_commands(env: dict[str, str]) -> None:
    created = json.loads(run(env, "test-jobs", "--json").stdout)
    assert len(created["ai"]) == 3
    assert json.loads(run(env, "stats", "--json").stdout)["analytics"]["waiting"] == 2
    run(env, "pause", "ai")
    health = json.loads(run(env, "health", "--json", code=1).stdout)
    assert health["queues"]["ai"]["status"] == "warning"
    run(env, "resume", "ai")
    assert "unknown queue" in run(env, "pause", "sms", code=1).stderr
    report = run(env, "report", "--format", "md").stdout
    assert "| ai |" in report
    assert "refusing to bind" in run(env, "api", "--host", "0.0.0.0", code=1).stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def spawn(env: dict[str, str]) -> Iterator[Any]:
    """Start ``nlq`` processes in the background; terminate leftovers at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([str(NLQ), *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _poll(check: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(240)  # its waits add up to 150 s on a slow machine
def test_api_subprocess_serves_the_dev_api(env: dict[str, str], spawn: Any) -> None:
    port = _free_port()
    proc = spawn("api", "--port", str(port))
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    _poll(up, what="the API to answer")
    r = httpx.post(f"{base}/api/dev/queue?action=test", timeout=30)
    assert r.status_code == 200
    stats = httpx.get(f"{base}/api/dev/queue?action=stats&queue=ai", timeout=30).json()
    assert stats["waiting"] == 3
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


@pytest.mark.timeout(300)  # its waits add up to 180 s on a slow machine
@pytest.mark.parametrize(("choice", "loop"), [
    ("auto", "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"),
    ("asyncio", "asyncio")])
def test_worker_subprocess_processes_jobs_and_stops_on_sigterm(
        env: dict[str, str], spawn: Any, redis_url: str, prefix: str, choice: str,
        loop: str) -> None:
    if sys.platform == "linux":  # a dependency there: the default loop of workers
        assert importlib.util.find_spec("uvloop") is not None
    env["NLQ_EVENT_LOOP"] = choice
    run(env, "perf", "--jobs", "20", "--queue", "analytics")
    proc = spawn("worker", "--queues", "analytics", "--concurrency", "4")
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        _poll(lambda: client.zcard(f"{prefix}:analytics:completed") == 20, 90,
              "20 analytics jobs to complete")
        assert client.llen(f"{prefix}:analytics:wait") == 0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    started = [line for line in proc.stderr.read().splitlines()
               if "started on queue analytics" in line]
    assert len(started) == 1, started
    assert started[0].endswith(f", {loop} loop)"), started
