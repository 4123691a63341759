"""A throw-away 3-master Redis Cluster on loopback ports, for the cluster tests.

Three ``redis-server --cluster-enabled yes`` processes in temporary directories, joined
by ``redis-cli --cluster create … --cluster-replicas 0``; ready once every node's
``CLUSTER INFO`` says ``cluster_state:ok``. The processes are killed on exit.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

NODES = 3


@dataclass
class LocalCluster:
    ports: list[int]
    processes: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        """A seed URL (the cluster client discovers the other nodes)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"


def missing_tools() -> str | None:
    """Why a cluster cannot be started here, or ``None``."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH: cannot start a local Redis Cluster"
    return None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster-bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20_000, 50_000)
        if port not in ports and _bindable(port) and _bindable(port + 10_000):
            ports.append(port)
    return ports


def _state_ok(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as client:
            info = client.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False
    text = info if isinstance(info, str) else str(info)
    return "cluster_state:ok" in text


@contextlib.contextmanager
def local_cluster(base: Path, timeout: float = 30.0) -> Iterator[LocalCluster]:
    ports = _cluster_ports(NODES)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            node_dir = base / str(port)
            node_dir.mkdir(parents=True)
            processes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--dir", str(node_dir), "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node_dir / "nodes.conf"),
                 "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        for port, proc in zip(ports, processes, strict=True):
            while not _answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not start")
                time.sleep(0.02)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout)
        while not all(_state_ok(p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        yield LocalCluster(ports, processes)
    finally:
        for proc in processes:
            proc.kill()
        for proc in processes:
            proc.wait()


def _answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False
