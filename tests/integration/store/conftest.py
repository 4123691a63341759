"""Fixtures of the store tests: a ``store`` on SQLite and on PostgreSQL.

SQLite: a fresh file in the test's tmp directory. PostgreSQL: a schema of its own in the
session's throw-away database (``postgres_database`` in tests/support/postgres.py, which
also says which server is used), dropped after the test. When no server answers, the
PostgreSQL cases are skipped and the reason is shown in the summary.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from newsletter_queue.services.store import Store
from tests.support.postgres import admin, run


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
    url = str(request.getfixturevalue("postgres_database"))
    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield url, schema
    finally:
        run(admin(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture
async def store(store_target: tuple[str, str | None]) -> AsyncIterator[Store]:
    """An initialised, empty store, closed afterwards."""
    url, schema = store_target
    async with Store(url, schema=schema) as s:
        yield s
