"""``RowWriter``: chunks' delivery rows written behind the sends, many per transaction,
into a real records store (SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from newsletter_queue.processors.delivery_rows import RowWriter
from newsletter_queue.processors.email_types import Delivery
from newsletter_queue.services.store import Store
from newsletter_queue.services.store.adapters import StoreDeliveryRecorder


class CountedRecorder:
    """The store's recorder, counting the writes (``record`` calls) it is given."""

    def __init__(self, inner: StoreDeliveryRecorder) -> None:
        self.inner = inner
        self.calls: list[tuple[int, bool]] = []

    async def record(self, deliveries: Sequence[Delivery], *,
                     only_missing: bool = False) -> None:
        self.calls.append((len(deliveries), only_missing))
        await self.inner.record(deliveries, only_missing=only_missing)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}") as opened:
        yield opened


def _rows(campaign: str, start: int, count: int, status: str = "sent") -> list[Delivery]:
    return [Delivery("t1", campaign, f"r{i}@example.com", status, 1, smtp_code=250)
            for i in range(start, start + count)]


async def test_chunks_handed_in_together_share_a_write_and_all_land(store: Store) -> None:
    recorder = CountedRecorder(StoreDeliveryRecorder(store))
    writer = RowWriter()
    writes = [writer.add(recorder, _rows("june", i * 20, 20)) for i in range(5)]
    await RowWriter.wait(writes, failing=False)
    assert writes == []  # forgotten once waited for
    assert recorder.calls == [(100, False)]  # five chunks, one write
    assert await store.count_deliveries("t1", "june", "sent") == 100


async def test_missing_rows_never_overwrite(store: Store) -> None:
    recorder = StoreDeliveryRecorder(store)
    writer = RowWriter()
    await RowWriter.wait([writer.add(recorder, _rows("june", 0, 3, "bounced"))],
                         failing=False)
    await RowWriter.wait([writer.add(recorder, [], _rows("june", 0, 5))], failing=False)
    assert await store.count_deliveries("t1", "june", "bounced") == 3
    assert await store.count_deliveries("t1", "june", "sent") == 2


async def test_a_failed_write_fails_the_job_unless_it_is_failing_already(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    recorder = StoreDeliveryRecorder(store)
    writer = RowWriter()
    # A row the store refuses (no tenant) fails the write it is in.
    bad = Delivery(None, "june", "x@example.com", "sent", 1)  # type: ignore[arg-type]
    with pytest.raises((TypeError, IntegrityError)):
        await RowWriter.wait([writer.add(recorder, [bad])], failing=False)
    await RowWriter.wait([writer.add(recorder, [bad])], failing=True)
    assert "could not record the delivery rows of a failing batch (TypeError" in caplog.text
    # The writer carries on with the next rows.
    await RowWriter.wait([writer.add(recorder, _rows("june", 0, 2))], failing=False)
    assert await store.count_deliveries("t1", "june", "sent") == 2


async def test_a_write_in_flight_lets_later_chunks_gather(store: Store) -> None:
    recorder = CountedRecorder(StoreDeliveryRecorder(store))
    writer = RowWriter()
    first = writer.add(recorder, _rows("june", 0, 20))
    await asyncio.sleep(0)  # the writer task starts its first write
    later = [writer.add(recorder, _rows("june", 20 + i * 20, 20)) for i in range(3)]
    await RowWriter.wait([first, *later], failing=False)
    assert recorder.calls == [(20, False), (60, False)]
    assert await store.count_deliveries("t1", "june", "sent") == 80
