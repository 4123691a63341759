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
    base: Path

    @property
    def url(self) -> str:
        """A seed URL (the cluster client discovers the other nodes)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def stop(self) -> None:
        """Kill every node (SIGKILL: an outage, not a shutdown)."""
        for proc in self.processes:
            proc.kill()
        for proc in self.processes:
            proc.wait()

    def start(self, timeout: float = 30.0) -> None:
        """Start the stopped nodes again on the same ports with their ``nodes.conf`` (the
        cluster re-forms, empty: nothing is persisted); wait for ``cluster_state:ok``."""
        self.processes[:] = [_start_node(port, self.base / str(port)) for port in self.ports]
        _wait_ready(self, timeout)


def _start_node(port: int, node_dir: Path) -> subprocess.Popen[bytes]:
    node_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
         "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
         "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_ready(cluster: LocalCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for port, proc in zip(cluster.ports, cluster.processes, strict=True):
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cluster node on port {port} did not start")
            time.sleep(0.02)
    while not all(_state_ok(p) for p in cluster.ports):
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not reach cluster_state:ok")
        time.sleep(0.05)


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
    cluster = LocalCluster(ports, [], base)
    try:
        for port in ports:
            cluster.processes.append(_start_node(port, base / str(port)))
        deadline = time.monotonic() + timeout
        for port, proc in zip(ports, cluster.processes, strict=True):
            while not _answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not start")
                time.sleep(0.02)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout)
        _wait_ready(cluster, timeout)
        yield cluster
    finally:
        cluster.stop()


def _answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False
