"""PostgreSQL for the whole suite (a plugin: ``pytest_plugins`` in tests/conftest.py).

Server: ``NLQ_TEST_POSTGRES_URL`` if set, else the first of ``postgres@127.0.0.1:5432/test``
and ``root@…/test`` that answers. When none answers, every test that needs PostgreSQL is
skipped and the reason is shown in the summary (``-ra``).

- ``postgres_database``: one throw-away database (``nlqt_<random>``) for the session,
  dropped when it ends; the store tests give each test its own schema in it.
- ``postgres_test_database``: a throw-away database for one test, dropped after it
  (``WITH (FORCE)``). Settings have no schema option, so code that opens its own store
  from ``DATABASE_URL`` (workers, the manager, the app, the CLI) gets a database instead.
- ``records_backend`` / ``database_url``: the records store the shared ``settings`` fixture
  uses — SQLite (its file in the test's state dir) unless a module opts in to both with
  ``pytestmark = BOTH_STORES``; then each of its tests runs as ``[sqlite]`` and
  ``[postgresql]``.

Only databases this module created are ever dropped; nothing else on the server is touched.
Administrative statements run on a loop of their own in a worker thread, so fixtures can
use them whatever the test's event loop is doing.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from newsletter_queue.config import mask_url

T = TypeVar("T")

CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
RECORDS_BACKENDS = ("sqlite", "postgresql")

# Runs every test of a module on both records stores (the ``settings`` fixture follows).
BOTH_STORES = pytest.mark.parametrize("records_backend", RECORDS_BACKENDS, indirect=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh event loop in a worker thread."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlqt-pg") as pool:
        return pool.submit(asyncio.run, coro).result()


def dsn(url: str, database: str | None = None) -> str:
    """A plain libpq DSN for asyncpg (drops a ``+asyncpg`` driver suffix)."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def store_url(server: str, database: str) -> str:
    """The ``postgresql+asyncpg`` URL of ``database`` on ``server``."""
    return dsn(server, database).replace("postgresql://", "postgresql+asyncpg://", 1)


async def _probe(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{mask_url(url)}: {exc}"
    await conn.close()
    return None


async def admin(url: str, sql: str) -> None:
    """Execute ``sql`` on the database of ``url``."""
    conn = await asyncpg.connect(dsn(url), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(server: str, *, locale: str | None = None) -> str:
    """Create an empty ``nlqt_<random>`` database on ``server``; return its name.

    From ``template0``, which nobody can connect to: copying ``template1`` fails while any
    other session on the server is connected to it. ``locale``: its LC_COLLATE and
    LC_CTYPE (default: the server's)."""
    name = f"nlqt_{uuid.uuid4().hex[:12]}"
    options = f" LOCALE '{locale}'" if locale is not None else ""
    run(admin(server, f'CREATE DATABASE "{name}" TEMPLATE template0{options}'))
    return name


def drop_database(server: str, name: str) -> None:
    """Drop a database made by ``create_database``, ending any connection still open."""
    assert name.startswith("nlqt_"), name
    run(admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of a PostgreSQL server to create throw-away databases on (else skip)."""
    explicit = os.environ.get("NLQ_TEST_POSTGRES_URL")
    candidates = (explicit,) if explicit else CANDIDATES
    problems = []
    for url in candidates:
        problem = run(_probe(url))
        if problem is None:
            return url
        problems.append(problem)
    pytest.skip("no PostgreSQL answers on loopback: " + "; ".join(problems))


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Iterator[str]:
    """A database created for this session (``postgresql+asyncpg`` URL); dropped after."""
    name = create_database(postgres_server)
    try:
        yield store_url(postgres_server, name)
    finally:
        drop_database(postgres_server, name)


@pytest.fixture
def postgres_test_database(postgres_server: str) -> Iterator[str]:
    """A database for this test alone (``postgresql+asyncpg`` URL); dropped after it.

    Fixtures that open stores on it depend on it (through ``settings``), so they are
    closed before the drop; ``WITH (FORCE)`` ends whatever a test left open."""
    name = create_database(postgres_server)
    try:
        yield store_url(postgres_server, name)
    finally:
        drop_database(postgres_server, name)


@pytest.fixture
def records_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` unless the test is parametrized (``BOTH_STORES``)."""
    backend = str(getattr(request, "param", "sqlite"))
    assert backend in RECORDS_BACKENDS, backend
    return backend


@pytest.fixture
def database_url(records_backend: str, request: pytest.FixtureRequest) -> str | None:
    """The ``DATABASE_URL`` of this test's records store; ``None``: SQLite in its state
    dir. With ``postgresql`` a database of its own (skipped when no server answers)."""
    if records_backend == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_test_database"))
