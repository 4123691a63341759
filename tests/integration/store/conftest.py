"""Fixtures of the store tests: a ``store`` on SQLite and on PostgreSQL.

SQLite: a fresh file in the test's tmp directory. PostgreSQL: ``NLQ_TEST_POSTGRES_URL``
if set, else the first of ``postgres@127.0.0.1:5432/test`` and ``root@…/test`` that
answers. The session creates one throw-away database (``nlqt_<random>``) there, each test
gets its own schema in it, and the database is dropped when the session ends — nothing
else on the server is touched. When no server answers, the PostgreSQL cases are skipped
and the reason is shown in the summary.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from newsletter_queue.config import mask_url
from newsletter_queue.services.store import Store

_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


def _dsn(url: str, database: str | None = None) -> str:
    """A plain libpq DSN for asyncpg (drops a ``+asyncpg`` driver suffix)."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _probe(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(_dsn(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{mask_url(url)}: {exc}"
    await conn.close()
    return None


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(_dsn(url), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of a PostgreSQL server to create the session's database on (else skip)."""
    explicit = os.environ.get("NLQ_TEST_POSTGRES_URL")
    candidates = (explicit,) if explicit else _CANDIDATES
    problems = []
    for url in candidates:
        problem = asyncio.run(_probe(url))
        if problem is None:
            return url
        problems.append(problem)
    pytest.skip("no PostgreSQL answers on loopback: " + "; ".join(problems))


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A database created for this session (``postgresql+asyncpg`` URL); dropped after."""
    name = f"nlqt_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(postgres_server, f'CREATE DATABASE "{name}"'))
    try:
        yield _dsn(postgres_server, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        asyncio.run(_admin(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_target(backend: str, request: pytest.FixtureRequest, tmp_path: Path
                 ) -> Iterator[tuple[str, str | None]]:
    """(URL, schema) of an empty database for this test; a PostgreSQL schema is dropped
    afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'records.sqlite3'}", None
        return
    # Resolved here, outside the event loop: the session fixture uses asyncio.run.
    url = str(request.getfixturevalue("postgres_database"))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield url, schema
    finally:
        asyncio.run(_admin(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
async def store(store_target: tuple[str, str | None]) -> AsyncIterator[Store]:
    """An initialised, empty store, closed afterwards."""
    url, schema = store_target
    async with Store(url, schema=schema) as s:
        yield s
