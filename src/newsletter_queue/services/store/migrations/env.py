"""Alembic's environment for the records store's revisions (``versions/``).

Two ways in:

- ``Store.init()`` and ``newsletter-queue db upgrade`` (``migrate.py``) pass their own
  connection as ``config.attributes["connection"]`` (and the PostgreSQL schema as
  ``["schema"]``), already inside the store's locked write transaction: nothing is
  opened or committed here, the store's transaction commits or rolls back everything.
- A developer's ``alembic`` command (``alembic.ini`` at the repository root; see
  docs/development.md): the database is ``-x url=…``, else the settings' one
  (``DATABASE_URL``, else the SQLite file in the state dir), ``-x schema=…`` a
  PostgreSQL schema; it is migrated under the same lock as at start-up. ``--sql``
  (offline) prints the DDL for ``-x url``'s dialect instead.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from newsletter_queue.config import load_settings
from newsletter_queue.services.store import migrate
from newsletter_queue.services.store.backend import async_url, create_engines, settings_url
from newsletter_queue.services.store.models import Base, UTCDateTime

config = context.config


def render_item(kind: str, obj: Any, _autogen: Any) -> str | Literal[False]:
    """A new revision spells ``models.UTCDateTime`` as the plain ``sa.DateTime()`` it is
    in the database: revisions never import ``models.py``, which moves on."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False  # Alembic's own rendering


def run(connection: Connection, schema: str | None) -> None:
    """Run the migrations (or autogenerate's comparison) on ``connection``."""
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_item=render_item, **migrate.context_options(schema))
    with context.begin_transaction():  # a no-op inside the caller's transaction
        context.run_migrations()


async def run_standalone(url: str, schema: str | None) -> None:
    """The developer's ``alembic`` command: a connection of our own, under the lock."""
    _, writer = create_engines(async_url(url), schema=schema)
    try:
        async with writer.begin() as conn:
            await migrate.lock(conn, schema)
            await conn.run_sync(run, schema)
    finally:
        await writer.dispose()


def main() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        run(given, config.attributes.get("schema"))
        return
    if config.config_file_name is not None:  # alembic.ini's logging sections
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    args = context.get_x_argument(as_dictionary=True)
    url = args.get("url") or settings_url(load_settings())
    schema = args.get("schema") or None
    if context.is_offline_mode():
        context.configure(url=async_url(url), target_metadata=Base.metadata,
                          literal_binds=True, render_item=render_item,
                          **migrate.context_options(schema))
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(run_standalone(url, schema))


main()
