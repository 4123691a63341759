"""The records store's migrations on real databases, SQLite and PostgreSQL (see conftest).

A database made by the previous release is played by ``tests/fixtures/schema/``: that
release's DDL, generated once from its ``models.py`` (the file's header says how),
loaded into an empty database together with a few rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from newsletter_queue.cli import app
from newsletter_queue.errors import DatabaseSchemaError, DatabaseUpgradeRequiredError
from newsletter_queue.services.store import DeadLetterRecord, DeliveryRecord, Store, migrate
from newsletter_queue.services.store.backend import async_url, create_engines
from newsletter_queue.services.store.models import Base
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "schema"
T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
# A few rows as release 0.1.0 wrote them; plain SQL that both backends take.
ROWS = """
INSERT INTO nlq_campaigns (tenant_id, campaign_id, subject, html, headers, created_at)
VALUES ('t1', 'c1', 'Spring news', '<p>Hi</p>', '{"X-Tag": "spring"}', '2026-03-10 08:00:00');
INSERT INTO nlq_deliveries (tenant_id, campaign_id, email, status, smtp_code, attempt,
                            created_at, updated_at)
VALUES ('t1', 'c1', 'a@example.com', 'sent', 250, 1, '2026-03-10 08:00:00',
        '2026-03-10 08:00:00'),
       ('t1', 'c1', 'b@example.com', 'bounced', 550, 2, '2026-03-10 08:00:00',
        '2026-03-10 08:05:00');
INSERT INTO nlq_dead_letters (queue, job_id, job_name, data, error, stacktrace, attempts,
                              failed_at)
VALUES ('email', 'j1', 'send-batch', '{"n": 1}', 'boom', '["line 1"]', 5,
        '2026-03-10 09:00:00');
"""
runner = CliRunner()


def previous_release_ddl(dialect: str) -> str:
    return (FIXTURES / f"release-0.1.0.{dialect}.sql").read_text(encoding="utf-8")


def _statements(sql: str) -> list[str]:
    """The statements of a fixture, without its header, each stripped."""
    body = "\n".join(line for line in sql.splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


async def raw_sql(url: str, schema: str | None, sql: str) -> None:
    """Run a script straight through the driver (no store, no SQLAlchemy)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with closing(sqlite3.connect(str(parsed.database))) as raw:
            raw.executescript(sql)
        return
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if schema is not None:
            sql = f'CREATE SCHEMA IF NOT EXISTS "{schema}"; SET search_path TO "{schema}";\n{sql}'
        await conn.execute(sql)
    finally:
        await conn.close()


async def raw_fetch(url: str, schema: str | None, sql: str) -> list[tuple[Any, ...]]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with closing(sqlite3.connect(str(parsed.database))) as raw:
            return [tuple(r) for r in raw.execute(sql).fetchall()]
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    settings = {"search_path": schema} if schema else None
    conn = await asyncpg.connect(dsn, timeout=10, server_settings=settings)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def differences(url: str, schema: str | None) -> list[Any]:
    """What Alembic's autogenerate would change to make the database ``models.py``'s."""
    _, engine = create_engines(async_url(url), schema=schema)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts=migrate.context_options(schema)),
                Base.metadata))
    finally:
        await engine.dispose()


def db(env: dict[str, str], *args: str, code: int = 0) -> str:
    """``newsletter-queue db …`` in-process; its output."""
    result = runner.invoke(app, ["db", *args], env=env)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


def cli_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "NLQ_STATE_DIR": str(tmp_path), **extra}


def with_password(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL with a password in it (the test server trusts loopback, so any
    will do) and that password, to check that nothing prints it; SQLite: no password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url, None
    if parsed.password:
        return url, str(parsed.password)
    return parsed.set(password="pw-s3cret-nlq").render_as_string(hide_password=False), \
        "pw-s3cret-nlq"


@pytest.fixture
def old_database(backend: str, store_target: tuple[str, str | None]) -> tuple[str, str | None]:
    """A database as release 0.1.0 left it: its tables (no version table) and a few rows."""
    url, schema = store_target
    asyncio.run(raw_sql(url, schema, previous_release_ddl(backend) + ROWS))
    return url, schema


async def check_old_rows(store: Store) -> None:
    """The rows of ``ROWS`` read back through the store, unchanged."""
    campaign = await store.get_campaign("t1", "c1")
    assert campaign is not None
    assert (campaign.subject, campaign.html, campaign.headers, campaign.created_at) == (
        "Spring news", "<p>Hi</p>", {"X-Tag": "spring"}, T0)
    deliveries = await store.list_deliveries("t1", "c1")
    assert [(d.email, d.status, d.smtp_code, d.attempt) for d in deliveries] == [
        ("a@example.com", "sent", 250, 1), ("b@example.com", "bounced", 550, 2)]
    [letter] = await store.list_dead_letters()
    assert (letter.job_id, letter.data, letter.stacktrace, letter.attempts) == (
        "j1", {"n": 1}, ["line 1"], 5)


# --- revision 1 is release 0.1.0 ---------------------------------------------------------
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_baseline_emits_the_previous_release_ddl(dialect: str) -> None:
    compiler = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}[dialect]
    baseline: Any = migrate.scripts().get_revision(migrate.BASELINE).module
    emitted = ["\n".join(line.rstrip() for line in str(s.compile(dialect=compiler))
                         .strip().splitlines()) for s in baseline.statements()]
    assert emitted == _statements(previous_release_ddl(dialect))


# --- from an empty database --------------------------------------------------------------
def test_an_empty_database_is_upgraded_to_the_models(
        backend: str, store_target: tuple[str, str | None], tmp_path: Path) -> None:
    url, schema = store_target
    env = cli_env(url, tmp_path)
    schema_args = ["--schema", schema] if schema else []
    assert "empty, not at head (revision 0001)" in db(env, "current", *schema_args)

    async def init() -> None:
        async with Store(url, schema=schema) as store:
            assert (await store.schema_status()).at_head

    asyncio.run(init())
    # Migrations and checks only look at nlq_* tables: every model must be one.
    assert all(name.startswith(migrate.TABLE_PREFIX) for name in Base.metadata.tables)
    assert asyncio.run(differences(url, schema)) == []
    assert "revision 0001 (head)" in db(env, "current", *schema_args)
    status = json.loads(db(env, "current", "--json", *schema_args))
    assert (status["current"], status["head"], status["at_head"]) == ("0001", "0001", True)
    if backend == "postgresql":  # the version table is in the store's schema, not public
        found = asyncio.run(raw_fetch(url, None, "SELECT table_schema FROM information_schema"
                                      ".tables WHERE table_name = 'nlq_alembic_version'"))
        assert (schema,) in found
        assert ("public",) not in found


# --- from a database of the previous release ---------------------------------------------
async def test_a_previous_release_database_is_stamped_and_upgraded(
        old_database: tuple[str, str | None]) -> None:
    url, schema = old_database
    async with Store(url, schema=schema) as store:
        status = await store.schema_status()
        assert (status.current, status.at_head) == (migrate.BASELINE, True)
        await check_old_rows(store)
        # Writes work on the old tables: an upsert on their unique constraint, a new id.
        await store.record_deliveries([
            DeliveryRecord("t1", "c1", "a@example.com", "bounced", attempt=3),
            DeliveryRecord("t1", "c1", "c@example.com", "sent", attempt=1)])
        assert await store.count_deliveries("t1", "c1") == 3
        assert await store.count_deliveries("t1", "c1", "bounced") == 2
        new_id = await store.add_dead_letter(DeadLetterRecord(
            "email", "j2", "send-batch", {"n": 2}, "again", [], 1))
        assert new_id == 2
    assert await differences(url, schema) == []
    async with Store(url, schema=schema) as again:  # a second start finds it at head
        assert (await again.schema_status()).at_head


async def test_unversioned_tables_that_are_not_the_previous_release_are_refused(
        old_database: tuple[str, str | None]) -> None:
    url, schema = old_database
    await raw_sql(url, schema, "DROP INDEX ix_event_campaign;"
                               " ALTER TABLE nlq_campaigns ADD COLUMN extra INTEGER;")
    store = Store(url, schema=schema)
    try:
        with pytest.raises(DatabaseSchemaError) as info:
            await store.init()
        assert "not those of release 0.1.0" in str(info.value)
        assert "ix_event_campaign" in str(info.value)
        assert "nlq_campaigns extra" in str(info.value)
        status = await store.schema_status()
        assert (status.current, status.unversioned) == (None, True)  # nothing was stamped
    finally:
        await store.close()


async def test_a_revision_of_a_newer_release_is_refused(
        store_target: tuple[str, str | None]) -> None:
    url, schema = store_target
    async with Store(url, schema=schema):
        pass
    await raw_sql(url, schema, "UPDATE nlq_alembic_version SET version_num = '9999';")
    store = Store(url, schema=schema)
    try:
        with pytest.raises(DatabaseSchemaError, match="'9999', which this release does not"):
            await store.init()
    finally:
        await store.close()


# --- auto-upgrade off, and the CLI -------------------------------------------------------
def test_with_auto_upgrade_off_start_up_fails_until_db_upgrade_has_run(
        old_database: tuple[str, str | None], tmp_path: Path) -> None:
    url, schema = old_database
    url, secret = with_password(url)
    settings = make_settings(database_url=url, db_auto_upgrade=False, state_dir=tmp_path)

    async def start(check: bool = False) -> None:
        store = Store.from_settings(settings, schema=schema)
        try:
            await store.init()
            if check:
                await check_old_rows(store)
        finally:
            await store.close()

    with pytest.raises(DatabaseUpgradeRequiredError) as info:
        asyncio.run(start())
    message = str(info.value)
    assert "unversioned 0.1.0 tables" in message
    assert "(revision 0001)" in message
    assert "run `newsletter-queue db upgrade`" in message
    env = cli_env(url, tmp_path, NLQ_DB_AUTO_UPGRADE="false")
    schema_args = ["--schema", schema] if schema else []
    outputs = [message, db(env, "current", *schema_args)]
    assert "unversioned 0.1.0 tables, not at head" in outputs[-1]
    outputs.append(db(env, "upgrade", *schema_args))
    assert "upgraded unversioned 0.1.0 tables → revision 0001" in outputs[-1]
    outputs.append(db(env, "current", *schema_args))
    assert "revision 0001 (head)" in outputs[-1]
    outputs.append(db(env, "upgrade", "--json", *schema_args))
    assert json.loads(outputs[-1]) == {"from": "0001", "from_state": "revision 0001",
                                       "to": "0001", "changed": False}
    asyncio.run(start(check=True))  # auto-upgrade still off: the database is at head now
    if secret is not None:
        assert all(secret not in text for text in outputs)
        assert "***" in outputs[1]


async def test_with_auto_upgrade_off_an_empty_database_is_not_created_either(
        store_target: tuple[str, str | None]) -> None:
    url, schema = store_target
    store = Store(url, schema=schema, auto_upgrade=False)
    try:
        with pytest.raises(DatabaseUpgradeRequiredError, match=r"\(empty\)"):
            await store.init()
        assert (await store.schema_status()).describe() == "empty"
    finally:
        await store.close()


# --- a later revision --------------------------------------------------------------------
_SECOND = '''"""test only: a revision after the baseline."""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("nlq_test_extra", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("note", sa.String(64), nullable=False))
    op.add_column("nlq_campaigns", sa.Column("test_flag", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("nlq_campaigns", "test_flag")
    op.drop_table("nlq_test_extra")
'''


@pytest.fixture
def second_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> Iterator[Callable[[], str]]:
    """Installs a revision 0002 beside the shipped ones (in this process only)."""
    extra = tmp_path / "extra_versions"
    extra.mkdir()
    (extra / "0002_test_extra.py").write_text(_SECOND, encoding="utf-8")
    shipped = Path(migrate.scripts().dir) / "versions"
    plain = migrate.alembic_config

    def config(connection: Any = None, schema: str | None = None) -> Any:
        cfg = plain(connection, schema)
        cfg.set_main_option("version_locations", os.pathsep.join([str(shipped), str(extra)]))
        return cfg

    def install() -> str:
        monkeypatch.setattr(migrate, "alembic_config", config)
        migrate.scripts.cache_clear()
        return "0002"

    try:
        yield install
    finally:
        monkeypatch.undo()
        migrate.scripts.cache_clear()


async def test_a_previous_release_database_goes_through_the_later_revisions(
        old_database: tuple[str, str | None], second_revision: Callable[[], str]) -> None:
    url, schema = old_database
    head = second_revision()
    behind = Store(url, schema=schema, auto_upgrade=False)
    try:
        with pytest.raises(DatabaseUpgradeRequiredError, match=r"\(revision 0002\)"):
            await behind.init()
    finally:
        await behind.close()
    async with Store(url, schema=schema) as store:  # stamped at 0001, upgraded to 0002
        assert (await store.schema_status()).current == head
        await check_old_rows(store)
    await raw_sql(url, schema, "INSERT INTO nlq_test_extra (id, note) VALUES (1, 'by 0002');")
    assert await raw_fetch(url, schema, "SELECT note FROM nlq_test_extra") == [("by 0002",)]


async def test_db_upgrade_goes_from_one_revision_to_the_next(
        store_target: tuple[str, str | None], second_revision: Callable[[], str]) -> None:
    url, schema = store_target
    async with Store(url, schema=schema) as store:
        assert (await store.schema_status()).current == "0001"
    head = second_revision()  # a release later
    store = Store(url, schema=schema, auto_upgrade=False)
    try:
        with pytest.raises(DatabaseUpgradeRequiredError, match=r"\(revision 0001\)"):
            await store.init()
        done = await store.upgrade()
        assert (done.before.current, done.head, done.changed) == ("0001", head, True)
        await store.init()  # at head: auto-upgrade being off does not matter
        assert (await store.schema_status()).current == head
    finally:
        await store.close()
    assert await raw_fetch(url, schema, "SELECT count(*) FROM nlq_test_extra") == [(0,)]


# --- several processes at once -----------------------------------------------------------
_STARTER = """
import asyncio, sys
from newsletter_queue.services.store import Store

async def main(url, schema):
    store = Store(url, schema=schema or None)
    try:
        await store.schema_status()  # connected before the start line
        print("ready", flush=True)
        sys.stdin.readline()
        await store.init()
        print((await store.schema_status()).current, flush=True)
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_two_processes_initialise_an_empty_database_at_once(
        store_target: tuple[str, str | None]) -> None:
    url, schema = store_target
    starters = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", _STARTER, url, schema or "", stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT) for _ in range(2)]
    for starter in starters:  # both connected and waiting
        assert starter.stdout is not None
        assert (await starter.stdout.readline()).strip() == b"ready"
    results = await asyncio.gather(*(s.communicate(b"go\n") for s in starters))
    for starter, (out, err) in zip(starters, results, strict=True):
        assert starter.returncode == 0, err.decode()[-3000:]
        assert out.decode().split() == ["0001"]
    assert await differences(url, schema) == []
