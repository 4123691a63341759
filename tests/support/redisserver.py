"""Private Redis servers for tests that need special configuration (eviction policy,
passwords, restarts). Each listens on a free loopback port and is stopped on exit."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from newsletter_queue.embedded import _free_port, find_server_binary


@dataclass
class PrivateRedis:
    port: int
    process: subprocess.Popen[bytes]
    binary: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@contextlib.contextmanager
def private_redis(data_dir: Path, *extra: str, timeout: float = 10.0) -> Iterator[PrivateRedis]:
    binary = find_server_binary().path
    port = _free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
         "--save", "", "--appendonly", "no", "--daemonize", "no", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private redis on port {port} did not start")
            time.sleep(0.02)
        yield PrivateRedis(port, process, binary)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(port: int) -> bool:
    """True once the server replies to PING at all (+PONG, or -NOAUTH with a password)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64)[:1] in (b"+", b"-")
    except OSError:
        return False
