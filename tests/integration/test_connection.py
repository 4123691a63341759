"""The connection factory and server checks against real servers."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter_queue.connection import connect, create_redis, delete_prefix, parse_version
from newsletter_queue.errors import EvictionPolicyError, RedisUnavailableError
from tests.conftest import make_settings
from tests.support.redisserver import private_redis


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on loopback that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


async def test_refused_connection_is_a_clear_masked_error() -> None:
    port = _closed_port()
    # A long connect timeout: a refused connection must not wait for it. Sitting it out
    # would take 10 s × 3 attempts (create_redis retries twice); being refused takes
    # milliseconds. The bound is half of the slow path, far from both.
    settings = make_settings(redis_url=f"redis://app:hunter2@127.0.0.1:{port}/0",
                             redis_connect_timeout_s=10)
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError) as info:
        await connect(settings)
    assert time.monotonic() - started < settings.redis_connect_timeout_s * 3 / 2
    assert info.value.url == f"redis://app:***@127.0.0.1:{port}/0"
    assert "hunter2" not in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_unresponsive_server_fails_within_a_bounded_time(silent_server: int) -> None:
    # The connect timeout bounds the handshake with a server that never answers: 0.3 s ×
    # 3 attempts, about 1 s. The command timeout must not: it would take 30 s (or more,
    # retried). The bound is half of that, far from both.
    settings = make_settings(redis_url=f"redis://:pw@127.0.0.1:{silent_server}/0",
                             redis_connect_timeout_s=0.3, redis_command_timeout_s=30)
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError) as info:
        await connect(settings)
    assert time.monotonic() - started < settings.redis_command_timeout_s / 2
    assert "pw@" not in str(info.value)


async def test_blocking_connection_outlives_redis_py_default_socket_timeout(
    redis_url: str, prefix: str
) -> None:
    """redis-py 8 defaults to a 5 s socket timeout; a 6 s BZPOPMIN must still work."""
    settings = make_settings(redis_url=redis_url, key_prefix=prefix)
    blocking = create_redis(settings, "blocking")
    try:
        started = time.monotonic()
        result = await blocking.bzpopmin(f"{prefix}:never-filled", 6)
        elapsed = time.monotonic() - started
    finally:
        await blocking.aclose()
    assert result is None
    assert elapsed >= 5.9


async def test_server_check_accepts_the_running_server(redis_url: str) -> None:
    client = await connect(make_settings(redis_url=redis_url))
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_version_parsing() -> None:
    assert parse_version("7.0.15") == (7, 0, 15)
    assert parse_version("6.2") == (6, 2, 0)
    assert parse_version("8.1.8-rc1") == (8, 1, 8)
    assert parse_version("6.0.20") < (6, 2, 0)


async def test_eviction_policy_warns_or_refuses_in_strict_mode(tmp_path: Path) -> None:
    with private_redis(tmp_path, "--maxmemory-policy", "allkeys-lru") as server:
        with pytest.warns(RuntimeWarning, match="maxmemory-policy=allkeys-lru"):
            client = await connect(make_settings(redis_url=server.url))
        await client.aclose()
        with pytest.raises(EvictionPolicyError, match="allkeys-lru"):
            await connect(make_settings(redis_url=server.url, strict=True))


async def test_unix_socket_url(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    with private_redis(tmp_path, "--unixsocket", str(sock), "--unixsocketperm", "700"):
        client = await connect(make_settings(redis_url=f"unix://{sock}"))
        try:
            assert await client.ping()
        finally:
            await client.aclose()


async def test_acl_user_and_password(tmp_path: Path) -> None:
    with private_redis(tmp_path, "--user", "default", "off",
                       "--user", "app", "on", ">s3cret-pw", "~*", "&*", "+@all") as server:
        base = f"127.0.0.1:{server.port}/0"
        client = await connect(make_settings(redis_url=f"redis://app:s3cret-pw@{base}"))
        try:
            assert await client.ping()
        finally:
            await client.aclose()
        with pytest.raises(RedisUnavailableError) as info:
            await connect(make_settings(redis_url=f"redis://app:wrong@{base}"))
        assert "wrong" not in str(info.value)


async def test_connect_timeout_setting_is_used() -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{_closed_port()}/0",
                             redis_connect_timeout_s=0.2)
    with pytest.raises(RedisUnavailableError):
        await asyncio.wait_for(connect(settings), timeout=5)


def _make_tls_files(directory: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for localhost/127.0.0.1 (openssl CLI)."""
    files = {name: directory / name for name in ("ca.key", "ca.crt", "server.key",
                                                 "server.csr", "server.crt", "ext.cnf")}
    files["ext.cnf"].write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files["ca.key"],
         "-out", files["ca.crt"], "-days", "2", "-subj", "/CN=nlq-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", files["server.key"],
         "-out", files["server.csr"], "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", files["server.csr"], "-CA", files["ca.crt"], "-CAkey",
         files["ca.key"], "-CAcreateserial", "-out", files["server.crt"], "-days", "2",
         "-extfile", files["ext.cnf"]],
    ]
    for step in steps:
        subprocess.run(["openssl", *map(str, step)], check=True, capture_output=True)
    return files


async def test_rediss_with_a_private_ca(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed: cannot make a test certificate")
    files = _make_tls_files(tmp_path)
    tls_port = _closed_port()
    try:
        server_cm = private_redis(
            tmp_path / "data", "--tls-port", str(tls_port),
            "--tls-cert-file", str(files["server.crt"]),
            "--tls-key-file", str(files["server.key"]),
            "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "no")
        server = server_cm.__enter__()
    except RuntimeError:
        pytest.skip("this Redis server binary was built without TLS support")
    try:
        url = f"rediss://localhost:{tls_port}/0"
        client = await connect(make_settings(redis_url=url,
                                             redis_tls={"ca_file": files["ca.crt"]}))
        try:
            assert await client.ping()
        finally:
            await client.aclose()
        # Without our CA the server's certificate is rejected, with a clear error.
        with pytest.raises(RedisUnavailableError, match="rediss://localhost"):
            await connect(make_settings(redis_url=url))
        assert server.port != tls_port
    finally:
        server_cm.__exit__(None, None, None)


async def test_delete_prefix_removes_only_that_prefix(redis_url: str, prefix: str) -> None:
    client = create_redis(make_settings(redis_url=redis_url))
    try:
        await client.mset({f"{prefix}:a:{i}": i for i in range(2500)})
        await client.set(f"{prefix}-other:keep", 1)
        assert await delete_prefix(client, prefix, batch=1000) == 2500
        assert [k async for k in client.scan_iter(f"{prefix}:*")] == []
        assert await client.get(f"{prefix}-other:keep") == "1"
    finally:
        await client.delete(f"{prefix}-other:keep")
        await client.aclose()
