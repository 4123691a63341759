"""One throw-away 3-master Redis Cluster for the cluster tests (each test has its own
hash-tagged key prefix), skipped with the reason when the Redis tools are absent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.redcluster import LocalCluster, local_cluster, missing_tools


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    reason = missing_tools()
    if reason is not None:
        pytest.skip(reason)
    with local_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def tagged_prefix() -> str:
    return "{nlqc-" + uuid.uuid4().hex[:10] + "}"


@pytest.fixture
def cluster_state(tmp_path: Path) -> Path:
    return tmp_path / "state"
