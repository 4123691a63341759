"""Schema migrations of the records store (Alembic): what ``Store.init()`` and
``newsletter-queue db upgrade|current`` run.

The revisions ship inside the package (``migrations/versions/``; ``migrations/env.py``
is Alembic's environment) and Alembic is configured here, in code: running them needs
no ``alembic.ini`` (the one at the repository root is for developers writing new
revisions, see docs/development.md). The version table is ``nlq_alembic_version`` —
not Alembic's default ``alembic_version`` — so that it cannot collide with the
platform's own Alembic history when the store shares its database (the reason every
table has the ``nlq_`` prefix); on PostgreSQL it is in the store's schema.

Everything runs on the store's own connection inside one write transaction, taken by
``lock``: SQLite's ``BEGIN IMMEDIATE`` holds the file's write lock, and on PostgreSQL an
advisory lock is held until the transaction ends. Of several processes starting at
once, one migrates and the others then find the database at head; a failed migration
rolls back whole (DDL is transactional on both backends). ``prepare`` is start-up:

- at head: nothing to do (one read of the version table);
- no tables: upgrade from nothing;
- the tables of release 0.1.0, made by its ``create_all`` (no version table): compared
  with the baseline revision's tables and, when they match, stamped at the baseline,
  then upgraded; when they do not, ``DatabaseSchemaError`` lists the differences;
- behind head with ``db_auto_upgrade`` off: ``DatabaseUpgradeRequiredError``, which
  names ``newsletter-queue db upgrade``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateSchema

from ...errors import DatabaseSchemaError, DatabaseUpgradeRequiredError

VERSION_TABLE = "nlq_alembic_version"
BASELINE = "0001"  # release 0.1.0's tables
TABLE_PREFIX = "nlq_"
SCRIPT_LOCATION = "newsletter_queue.services.store:migrations"
_LOCK_KEY = 0x6E6C7131  # "nlq1": the PostgreSQL advisory lock serialising migrations


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands: its revision (``None``: not versioned) and this
    release's head; ``unversioned`` when it has tables but no version (release 0.1.0)."""

    current: str | None
    head: str
    unversioned: bool = False

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        """``revision 0001``, ``empty`` or ``unversioned 0.1.0 tables``."""
        if self.current is not None:
            return f"revision {self.current}"
        return "unversioned 0.1.0 tables" if self.unversioned else "empty"

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current, "head": self.head, "at_head": self.at_head,
                "unversioned": self.unversioned, "state": self.describe()}


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade did: from ``before`` to ``head``."""

    before: SchemaStatus
    head: str

    @property
    def changed(self) -> bool:
        return not self.before.at_head

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.before.current, "from_state": self.before.describe(),
                "to": self.head, "changed": self.changed}


def alembic_config(connection: Connection | None = None, schema: str | None = None
                   ) -> Config:
    """Alembic's configuration, without a file; ``env.py`` migrates ``connection``."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


@functools.cache
def scripts() -> ScriptDirectory:
    """The revisions shipped with this release (read once per process)."""
    return ScriptDirectory.from_config(alembic_config())


def context_options(schema: str | None) -> dict[str, Any]:
    """The ``context.configure`` options every migration, check and autogenerate uses."""
    return {"version_table": VERSION_TABLE, "version_table_schema": schema,
            "include_name": _ours, "compare_type": True, "render_as_batch": True}


def _ours(name: str | None, type_: str, _parents: Any) -> bool:
    """Only the store's own tables: the platform's tables beside them are not ours to
    compare, create or drop."""
    if type_ != "table":
        return True
    return bool(name) and str(name).startswith(TABLE_PREFIX) and name != VERSION_TABLE


def _context(connection: Connection, schema: str | None) -> MigrationContext:
    return MigrationContext.configure(connection, opts=context_options(schema))


def baseline_metadata() -> MetaData:
    """Release 0.1.0's tables, as the baseline revision defines them."""
    module: Any = scripts().get_revision(BASELINE).module
    return module.metadata()  # type: ignore[no-any-return]


async def lock(conn: AsyncConnection, schema: str | None) -> None:
    """Serialise migrations across processes for the rest of ``conn``'s transaction.

    SQLite: the store's write transaction (``BEGIN IMMEDIATE``) is the lock. PostgreSQL:
    an advisory lock, then the schema is created if it is missing.
    """
    if conn.dialect.name != "postgresql":
        return
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    if schema is not None:
        await conn.execute(CreateSchema(schema, if_not_exists=True))


def status(connection: Connection, schema: str | None) -> SchemaStatus:
    """The database's revision against this release's head (reads only).

    Raises:
        DatabaseSchemaError: the database is at a revision this release does not know
            (a newer release upgraded it), or on more than one branch.
    """
    head = scripts().get_current_head()
    assert head is not None, "the package ships at least the baseline revision"
    heads = _context(connection, schema).get_current_heads()
    if len(heads) > 1:
        raise DatabaseSchemaError(f"the records database is at several revisions at once "
                                  f"({', '.join(heads)}); this release has one line, to {head}")
    if heads:
        try:
            scripts().get_revision(heads[0])
        except CommandError:
            raise DatabaseSchemaError(
                f"the records database is at revision {heads[0]!r}, which this release "
                f"does not know (its newest is {head}): was it upgraded by a newer "
                "newsletter-queue? Run that release, or restore a backup") from None
        return SchemaStatus(heads[0], head)
    tables = [t for t in inspect(connection).get_table_names(schema=schema)
              if _ours(t, "table", None)]
    return SchemaStatus(None, head, unversioned=bool(tables))


def prepare(connection: Connection, schema: str | None, auto_upgrade: bool, url: str
            ) -> Upgrade:
    """Start-up: bring the database to head, or fail if it is behind and ``auto_upgrade``
    is off. Runs inside ``lock``'s transaction; ``url`` is the masked URL for messages.

    Raises:
        DatabaseUpgradeRequiredError: behind head and ``auto_upgrade`` is off.
        DatabaseSchemaError: see ``status`` and ``upgrade``.
    """
    before = status(connection, schema)
    if before.at_head:
        return Upgrade(before, before.head)
    if not auto_upgrade:
        raise DatabaseUpgradeRequiredError(url, before.describe(), before.head)
    return _upgrade(connection, schema, before, url)


def upgrade(connection: Connection, schema: str | None, url: str) -> Upgrade:
    """``newsletter-queue db upgrade``: to head, whatever ``db_auto_upgrade`` says."""
    return _upgrade(connection, schema, status(connection, schema), url)


def _upgrade(connection: Connection, schema: str | None, before: SchemaStatus, url: str
             ) -> Upgrade:
    """Stamp release 0.1.0's tables at the baseline (after checking them), then upgrade.

    Raises:
        DatabaseSchemaError: the unversioned tables are not release 0.1.0's.
    """
    if before.at_head:
        return Upgrade(before, before.head)
    if before.unversioned:
        differences = compare_metadata(_context(connection, schema), baseline_metadata())
        if differences:
            shown = "; ".join(_difference(d) for d in differences[:10])
            more = f" (and {len(differences) - 10} more)" if len(differences) > 10 else ""
            raise DatabaseSchemaError(
                f"the records database {url} has {TABLE_PREFIX}* tables but no "
                f"{VERSION_TABLE}, and they are not those of release 0.1.0, so it is "
                f"not upgraded: {shown}{more}")
        _context(connection, schema).stamp(scripts(), BASELINE)
    command.upgrade(alembic_config(connection, schema), "head")
    return Upgrade(before, before.head)


def _difference(diff: Any) -> str:
    """One of ``compare_metadata``'s differences in words: ``add_index ix_event_campaign``."""
    if isinstance(diff, list):  # column modifications come as a list of tuples
        return ", ".join(_difference(d) for d in diff)
    kind, *rest = diff
    names = [str(getattr(x, "name", x)) for x in rest if x is not None
             and not isinstance(x, dict)]
    return " ".join([str(kind), *names[:4]])
