"""The records store on a real database: SQLite and PostgreSQL (see conftest)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from newsletter_queue.errors import ConfigurationError
from newsletter_queue.services.store import (
    AIResultRecord,
    CampaignRecord,
    DeadLetterRecord,
    DeliveryRecord,
    EventRecord,
    Store,
)
from tests.conftest import make_settings

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


async def test_campaign_upsert_replaces_content_and_keeps_created_at(store: Store) -> None:
    first = CampaignRecord("t1", "c1", "Hello {{ name }}", html="<p>Hi</p>", text="Hi",
                           from_addr="News <news@example.com>", reply_to="r@example.com",
                           headers={"X-Tag": "spring"}, created_at=T0)
    await store.upsert_campaign(first)
    await store.upsert_campaign(first)
    assert await store.get_campaign("t1", "c1") == first

    await store.upsert_campaign(CampaignRecord("t1", "c1", "Changed", html="<p>2</p>",
                                               created_at=T0 + timedelta(days=1)))
    got = await store.get_campaign("t1", "c1")
    assert got is not None
    assert (got.subject, got.html, got.text, got.headers) == ("Changed", "<p>2</p>", None, {})
    assert got.created_at == T0
    assert await store.get_campaign("t2", "c1") is None
    assert await store.get_campaign("t1", "c2") is None


async def test_record_deliveries_is_an_idempotent_upsert(store: Store) -> None:
    batch = [DeliveryRecord("t1", "c1", f"u{i}@example.com", "sent", attempt=1,
                            message_id=f"<m{i}@example.com>", smtp_code=250,
                            smtp_response="250 OK", created_at=T0) for i in range(5)]
    assert await store.record_deliveries(batch) == 5
    before = await store.list_deliveries("t1", "c1")
    assert await store.record_deliveries(batch) == 5  # a retried job records again
    assert await store.list_deliveries("t1", "c1") == before
    assert await store.count_deliveries("t1", "c1") == 5

    # A later outcome for the same recipient replaces the old one; only a status change
    # moves updated_at.
    later = T0 + timedelta(hours=2)
    await store.record_deliveries([
        DeliveryRecord("t1", "c1", "u0@example.com", "bounced", attempt=2, smtp_code=550,
                       smtp_response="550 no such user", created_at=later),
        DeliveryRecord("t1", "c1", "u1@example.com", "sent", attempt=2, created_at=later),
    ])
    rows = {d.email: d for d in await store.list_deliveries("t1", "c1")}
    assert len(rows) == 5
    assert (rows["u0@example.com"].status, rows["u0@example.com"].smtp_code,
            rows["u0@example.com"].attempt) == ("bounced", 550, 2)
    assert rows["u0@example.com"].created_at == T0
    assert rows["u0@example.com"].updated_at == later
    assert rows["u1@example.com"].attempt == 2
    assert rows["u1@example.com"].updated_at == T0
    assert await store.count_deliveries("t1", "c1", "sent") == 4
    assert [d.email for d in await store.list_deliveries("t1", "c1", "bounced")] == [
        "u0@example.com"]
    assert len(await store.list_deliveries("t1", "c1", limit=2, offset=1)) == 2
    assert await store.count_deliveries("t1", "other") == 0


async def test_duplicate_keys_in_one_batch_keep_the_last(store: Store) -> None:
    assert await store.record_deliveries([
        DeliveryRecord("t1", "c1", "a@example.com", "failed"),
        DeliveryRecord("t1", "c1", "a@example.com", "sent"),
    ]) == 1
    [only] = await store.list_deliveries("t1", "c1")
    assert only.status == "sent"
    assert await store.record_deliveries([]) == 0


async def test_ten_thousand_events_in_one_call(store: Store) -> None:
    kinds = ("opened", "clicked", "delivered", "sent")
    events = [
        EventRecord("t1", f"c{i % 3}", f"user{i}@example.com", kinds[i % 4],
                    T0 + timedelta(seconds=i),
                    url=f"https://example.com/{i % 7}" if kinds[i % 4] == "clicked" else None)
        for i in range(10_000)
    ]
    # Batched, not row by row: counted in statements sent to the database, not in
    # seconds (about 0.15 s here on both backends; a clock bound would depend on the
    # machine). A batched INSERT is one executemany (or a few pages of a multi-row
    # INSERT); row by row would be 10,000 statements.
    statements: list[bool] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            statements.append(executemany)

    engine = store._engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert await store.record_events(events) == 10_000
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert 1 <= len(statements) <= 100, f"{len(statements)} INSERT statements"
    assert await store.count_events("t1") == 10_000
    assert await store.count_events("t1", type="opened") == 2_500
    assert await store.count_events("t1", campaign_id="c0") == 3_334
    assert await store.count_events("t2") == 0
    assert await store.record_events([]) == 0


def test_records_reject_unknown_status_and_type() -> None:
    with pytest.raises(ValueError, match="status"):
        DeliveryRecord("t", "c", "a@example.com", "lost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="type"):
        EventRecord("t", "c", "a@example.com", "read", T0)  # type: ignore[arg-type]


async def test_dead_letters_list_and_replay(store: Store) -> None:
    ids = []
    for n in range(3):
        ids.append(await store.add_dead_letter(DeadLetterRecord(
            queue="email" if n < 2 else "ai", job_id=f"job-{n}", job_name="send-batch",
            data={"campaignId": "c1", "n": n}, error=f"boom {n}",
            stacktrace=["Traceback …", f"Error: boom {n}"], attempts=5,
            failed_at=T0 + timedelta(minutes=n))))
    assert len(set(ids)) == 3

    listed = await store.list_dead_letters()
    assert [d.job_id for d in listed] == ["job-2", "job-1", "job-0"]  # newest first
    assert listed[0].id == ids[2]
    assert listed[2].data == {"campaignId": "c1", "n": 0}
    assert listed[2].stacktrace == ["Traceback …", "Error: boom 0"]
    assert listed[2].failed_at == T0
    assert [d.job_id for d in await store.list_dead_letters(queue="email")] == [
        "job-1", "job-0"]
    assert [d.job_id for d in await store.list_dead_letters(limit=1)] == ["job-2"]

    assert await store.mark_dead_letter_replayed(ids[0], "job-0-replay") is True
    assert await store.mark_dead_letter_replayed(ids[0], "again") is False  # once only
    assert await store.mark_dead_letter_replayed(10**9, "nope") is False
    replayed = await store.get_dead_letter(ids[0])
    assert replayed is not None
    assert replayed.replay_job_id == "job-0-replay"
    assert replayed.replayed_at is not None
    assert replayed.replayed_at.tzinfo is not None
    assert [d.job_id for d in await store.list_dead_letters()] == ["job-2", "job-1"]
    assert [d.job_id for d in await store.list_dead_letters(include_replayed=True)] == [
        "job-2", "job-1", "job-0"]
    assert await store.get_dead_letter(10**9) is None


async def test_ai_results_are_saved_once_per_job(store: Store) -> None:
    record = AIResultRecord(job_id="ai-1", tenant_id="t1", type="subject-optimization",
                            input={"subject": "Hi"}, output={"variants": ["Hi!", "Hey"]},
                            provider="offline", model="heuristic-1", created_at=T0)
    first = await store.save_ai_result(record)
    again = await store.save_ai_result(record)  # a retried job
    assert first == again
    got = await store.get_ai_result("ai-1")
    assert got is not None
    assert got.output == {"variants": ["Hi!", "Hey"]}
    assert (got.id, got.provider, got.model, got.created_at) == (
        first, "offline", "heuristic-1", T0)
    assert await store.get_ai_result("ai-2") is None


def test_from_settings_defaults_to_the_sqlite_file(tmp_path: Path) -> None:
    settings = make_settings(state_dir=tmp_path / "state")
    store = Store.from_settings(settings)
    assert store.dialect == "sqlite"
    assert store.url == f"sqlite+aiosqlite:///{settings.sqlite_path()}"
    assert settings.sqlite_path().parent.is_dir()


def test_the_database_password_is_never_shown() -> None:
    settings = make_settings(database_url="postgres://app:s3cret@db.internal:5432/news")
    store = Store.from_settings(settings)
    assert store.dialect == "postgresql"
    assert "s3cret" not in repr(store)
    assert "s3cret" not in store.url
    assert store.url == "postgresql+asyncpg://app:***@db.internal:5432/news"


def test_unsupported_urls_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="mysql") as info:
        Store("mysql://u:pw-secret@host/db")
    assert "pw-secret" not in str(info.value)
    with pytest.raises(ConfigurationError, match="schema"):
        Store("sqlite+aiosqlite:///:memory:", schema="x")


async def test_in_memory_sqlite_works(tmp_path: Path) -> None:
    async with Store("sqlite:///:memory:") as memory:
        await memory.record_events([EventRecord("t", "c", "a@example.com", "opened", T0)])
        assert await memory.count_events("t") == 1


_WRITER = """
import asyncio, sys
from newsletter_queue.services.store import DeliveryRecord, EventRecord, Store
from datetime import datetime, UTC

async def main(url, n):
    async with Store(url) as store:
        for i in range(40):
            await store.record_deliveries([DeliveryRecord(
                "t", "c", f"p{n}-{i}@example.com", "sent")])
            await store.record_events([EventRecord(
                "t", "c", f"p{n}-{i}@example.com", "opened", datetime.now(UTC))])
            await store.refresh_campaign_stats("t", "c")

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_several_processes_write_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    async with Store(url) as store:  # tables exist before the writers start
        writers = [await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, url, str(n),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in range(4)]
        results = [await w.communicate() for w in writers]
        for writer, (_, err) in zip(writers, results, strict=True):
            assert writer.returncode == 0, err.decode()[-2000:]
        assert await store.count_deliveries("t", "c") == 160
        assert await store.count_events("t") == 160
        stats = await store.refresh_campaign_stats("t", "c")
        assert (stats.sent, stats.unique_opens, stats.open_rate) == (160, 160, 1.0)


async def test_sqlite_file_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{path}"):
        pass
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_concurrent_init_of_a_fresh_database(store_target: tuple[str, str | None]
                                                   ) -> None:
    """Several workers starting at once all create-or-find the tables."""
    url, schema = store_target
    stores = [Store(url, schema=schema) for _ in range(4)]
    try:
        await asyncio.gather(*(s.init() for s in stores))
        await stores[0].record_events([EventRecord("t", "c", "a@example.com", "opened", T0)])
        assert await stores[3].count_events("t") == 1
    finally:
        for s in stores:
            await s.close()
