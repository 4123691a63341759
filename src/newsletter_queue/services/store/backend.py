"""Engines for the two backends: URL checks and the SQLite settings that let several
worker processes share one database file.

SQLite gets a WAL journal (readers never wait for the writer), a busy timeout (a writer
waits for the lock instead of failing) and ``BEGIN IMMEDIATE`` for write transactions.
That last one matters: a deferred transaction that reads first and then writes fails
with "database is locked" at once, without waiting, when another process committed in
between — the busy timeout only helps a transaction that takes the write lock up front.
So there are two engines over one pool: the reader (plain ``BEGIN``) and the writer.

PostgreSQL URLs get the asyncpg driver; ``schema`` becomes the ``search_path``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ...config import Settings, mask_url
from ...errors import ConfigurationError

SQLITE_BUSY_TIMEOUT_S = 30.0
_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_BEGIN_OPTION = "nlq_sqlite_begin"


def masked(url: str) -> str:
    """``mask_url`` that never raises (it does on an invalid port)."""
    try:
        return mask_url(url)
    except ValueError:
        return "<unparseable database URL>"


def settings_url(settings: Settings) -> str:
    """``DATABASE_URL`` if set, else the SQLite file ``settings.sqlite_path()``."""
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    return url or f"sqlite+aiosqlite:///{settings.sqlite_path()}"


def async_url(url: str) -> URL:
    """Parse ``url`` and give it the async driver of its backend.

    Raises:
        ConfigurationError: unparseable URL or a backend other than SQLite/PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"invalid database URL {masked(url)}: {exc}") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigurationError(
            f"unsupported database URL scheme {parsed.drivername!r} in {masked(url)}; "
            "use sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db"
        )
    return parsed.set(drivername=driver)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is turned off; ``_sqlite_on_begin`` emits ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        _enable_wal(cursor)
        # In WAL mode NORMAL loses no data on an application crash, only on power loss.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL once. The switch needs the file to itself and SQLite's busy
    handler does not cover it, so several processes opening a fresh database at once
    retry here instead of failing with "database is locked"."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            row = cursor.fetchone()
            if row and str(row[0]).lower() in ("wal", "memory"):
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:  # the driver adapter re-raises sqlite3's errors
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)  # runs in the driver's own thread, not on the event loop
            pause = min(pause * 2, 0.1)


def _sqlite_on_begin(conn: Any) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))


def create_engines(url: URL, *, schema: str | None = None, echo: bool = False
                   ) -> tuple[AsyncEngine, AsyncEngine]:
    """``(reader, writer)`` engines sharing one connection pool.

    Raises:
        ConfigurationError: ``schema`` given for SQLite.
    """
    kwargs: dict[str, Any] = {"echo": echo}
    if url.get_backend_name() != "sqlite":
        kwargs["pool_pre_ping"] = True
        if schema is not None:
            kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        engine = create_async_engine(url, **kwargs)
        return engine, engine
    if schema is not None:
        raise ConfigurationError("schema= is for PostgreSQL; SQLite has one schema")
    database = url.database or ""
    kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    if database in ("", ":memory:"):
        kwargs["poolclass"] = StaticPool  # one connection, or each would see its own DB
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine, engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
