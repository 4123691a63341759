"""``manager.campaigns`` without a worker: save, send, idempotence, bad rows, partial
sends, duplicates, scheduling, state errors and the list — against real Redis and the
records store, each test on SQLite and on PostgreSQL. What workers do with the batches
is in email/test_campaigns_managed.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from newsletter_queue import (
    CampaignNotFoundError,
    CampaignStateError,
    ContentError,
    QueueManager,
    Recipient,
    RecipientsError,
)
from newsletter_queue.campaigns import CampaignControl, batch_job_id
from newsletter_queue.campaigns.manage import BULK_GROUP
from newsletter_queue.campaigns.recipients import rows_from_csv
from tests.support.postgres import BOTH_STORES

pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL


async def _save(manager: QueueManager, campaign: str = "june") -> None:
    await manager.campaigns.save("t1", campaign, subject="Hi {{ name }}",
                                 text="Hello {{ name }}", from_addr="News <n@example.com>")


async def _email_jobs(manager: QueueManager) -> int:
    stats = await manager.get_queue_stats("email")
    return stats.waiting + stats.prioritized + stats.delayed + stats.active


async def test_each_case_records_the_campaign_in_its_own_store(
        manager: QueueManager, records_backend: str) -> None:
    # What keeps the [postgresql] cases honest: nothing falls back to the SQLite file.
    await _save(manager)
    store = await manager.store()
    assert store.dialect == records_backend
    assert await store.get_campaign("t1", "june") is not None
    assert manager.settings.sqlite_path().exists() == (records_backend == "sqlite")


async def test_a_saved_campaign_is_a_draft_and_sending_enqueues_its_batches(
        manager: QueueManager) -> None:
    await _save(manager)
    assert (await manager.campaigns.status("t1", "june")).state == "draft"
    recipients = [Recipient(email=f"r{i}@example.com") for i in range(25)]
    result = await manager.campaigns.send("t1", "june", recipients, batch_size=10)
    assert (result.created, result.state, result.recipients, result.batches) == (
        True, "sending", 25, 3)
    status = await manager.campaigns.status("t1", "june")
    assert (status.state, status.total, status.pending, status.batches_total) == (
        "sending", 25, 25, 3)
    job = await manager.get_job("email", batch_job_id("t1", "june", 2))
    assert job is not None
    assert [r["email"] for r in job.data["recipients"]] == [
        f"r{i}@example.com" for i in range(20, 25)]


async def test_sending_again_adds_nothing_and_says_so(manager: QueueManager) -> None:
    await _save(manager)
    rows = [{"email": f"r{i}@example.com"} for i in range(30)]
    first = await manager.campaigns.send("t1", "june", rows, batch_size=10)
    again = await manager.campaigns.send("t1", "june", rows, batch_size=5)
    assert first.created
    assert (again.created, again.state, again.batches) == (False, "sending", 0)
    assert await _email_jobs(manager) == 3


async def test_bad_rows_are_reported_with_row_numbers_and_nothing_is_enqueued(
        manager: QueueManager) -> None:
    await _save(manager)
    rows = [{"email": "ok1@example.com"}, {"email": "not-an-address"},
            {"email": "ok2@example.com"}, {"name": "no address"}]
    with pytest.raises(RecipientsError) as caught:
        await manager.campaigns.send("t1", "june", rows)
    assert [(r.row, r.field) for r in caught.value.rows] == [(2, "email"), (4, "email")]
    assert "row 2" in str(caught.value)
    assert await _email_jobs(manager) == 0
    assert (await manager.campaigns.status("t1", "june")).state == "draft"


async def test_a_partial_send_enqueues_only_the_good_rows(manager: QueueManager) -> None:
    await _save(manager)
    rows = [(1, {"email": "ok1@example.com"}), (2, {"email": "bad"}),
            (3, {"email": "ok2@example.com"})]
    result = await manager.campaigns.send("t1", "june", rows, partial=True)
    assert (result.created, result.recipients) == (True, 2)
    assert [r.row for r in result.skipped] == [2]
    job = await manager.get_job("email", batch_job_id("t1", "june", 0))
    assert job is not None
    assert [r["email"] for r in job.data["recipients"]] == ["ok1@example.com",
                                                            "ok2@example.com"]


async def test_duplicate_addresses_are_collapsed_case_blind(manager: QueueManager) -> None:
    await _save(manager)
    rows = [{"email": "Ann@Example.com", "name": "Ann"}, {"email": "bob@example.com"},
            {"email": "ann@example.com", "name": "Ann again"}]
    result = await manager.campaigns.send("t1", "june", rows)
    assert (result.recipients, result.duplicates) == (2, 1)
    job = await manager.get_job("email", batch_job_id("t1", "june", 0))
    assert job is not None
    assert [r.get("name") for r in job.data["recipients"]] == ["Ann", None]


async def test_a_scheduled_campaign_waits_delayed_until_its_time(
        manager: QueueManager) -> None:
    await _save(manager)
    send_at = datetime.now(UTC) + timedelta(hours=2)
    result = await manager.campaigns.send(
        "t1", "june", [{"email": f"r{i}@example.com"} for i in range(15)],
        send_at=send_at, batch_size=10)
    assert result.state == "scheduled"
    status = await manager.campaigns.status("t1", "june")
    assert status.state == "scheduled"
    assert status.send_at is not None
    assert abs((status.send_at - send_at).total_seconds()) < 0.01
    for index in range(2):
        job = await manager.get_job("email", batch_job_id("t1", "june", index))
        assert job is not None
        assert job.state == "delayed"
        assert job.timestamp is not None
        due_ms = job.timestamp + job.delay
        assert abs(due_ms - send_at.timestamp() * 1000) < 1000
    # Pausing a scheduled campaign leaves its batches delayed; resuming before its time
    # makes it scheduled again (nothing is promoted early).
    assert (await manager.campaigns.pause("t1", "june")).state == "paused"
    assert (await manager.campaigns.resume("t1", "june")).state == "scheduled"
    job = await manager.get_job("email", batch_job_id("t1", "june", 0))
    assert job is not None
    assert job.state == "delayed"


async def test_saving_refuses_once_the_campaign_is_sent(manager: QueueManager) -> None:
    await _save(manager)
    await manager.campaigns.send("t1", "june", [{"email": "a@example.com"}])
    with pytest.raises(CampaignStateError) as caught:
        await _save(manager)
    assert caught.value.state == "sending"
    assert caught.value.details["state"] == "sending"


async def test_a_template_error_names_the_field_and_the_line(manager: QueueManager) -> None:
    with pytest.raises(ContentError) as caught:
        await manager.campaigns.save(
            "t1", "june", subject="Hi", text="fine {{ name }}",
            html="<p>one</p>\n<p>two</p>\n<p>{{ name | }}</p>\n")
    assert (caught.value.field, caught.value.line) == ("html", 3)
    assert str(caught.value).startswith("html, line 3: ")
    with pytest.raises(ContentError) as header:
        await manager.campaigns.save("t1", "june", subject="Hi", text="x",
                                     headers={"Bcc": "spy@example.com"})
    assert header.value.field == "headers"
    with pytest.raises(CampaignNotFoundError):
        await manager.campaigns.status("t1", "june")  # nothing was stored


async def test_wrong_transitions_raise_state_errors(manager: QueueManager) -> None:
    await _save(manager)
    with pytest.raises(CampaignStateError):
        await manager.campaigns.pause("t1", "june")  # a draft
    with pytest.raises(CampaignNotFoundError):
        await manager.campaigns.cancel("t1", "nope")
    with pytest.raises(CampaignNotFoundError):
        await manager.campaigns.send("t1", "nope", [{"email": "a@example.com"}])
    await manager.campaigns.send("t1", "june", [{"email": "a@example.com"}])
    with pytest.raises(CampaignStateError):
        await manager.campaigns.resume("t1", "june")  # sending, not paused
    await manager.campaigns.cancel("t1", "june")
    with pytest.raises(CampaignStateError) as caught:
        await manager.campaigns.pause("t1", "june")
    assert caught.value.state == "cancelled"


async def test_the_list_is_newest_first_and_paginated(manager: QueueManager) -> None:
    for name in ("first", "second", "third"):
        await _save(manager, name)
    await manager.campaigns.send("t1", "second", [{"email": "a@example.com"}])
    await manager.campaigns.save("t2", "other", subject="S", text="x")
    page = await manager.campaigns.list("t1", page=1, page_size=2)
    assert page.total == 3
    assert [(i.campaign_id, i.status.state) for i in page.items] == [
        ("third", "draft"), ("second", "sending")]
    assert page.items[1].status.total == 1
    rest = await manager.campaigns.list("t1", page=2, page_size=2)
    assert [i.campaign_id for i in rest.items] == ["first"]


async def test_many_batches_are_added_in_several_bulk_groups(manager: QueueManager) -> None:
    await _save(manager)
    count = 2 * BULK_GROUP + 5
    result = await manager.campaigns.send(
        "t1", "june", [{"email": f"r{i}@example.com"} for i in range(count)], batch_size=1)
    assert result.batches == count
    assert await _email_jobs(manager) == count
    last = await manager.get_job("email", batch_job_id("t1", "june", count - 1))
    assert last is not None
    assert last.data["recipients"] == [{"email": f"r{count - 1}@example.com"}]


async def test_the_rate_and_eta_come_from_the_workers_counters(
        manager: QueueManager) -> None:
    await _save(manager)
    await manager.campaigns.send("t1", "june", [{"email": f"r{i}@example.com"}
                                                for i in range(100)])
    client = await manager.client()
    control = CampaignControl(client, manager.settings.key_prefix, "t1", "june")
    assert await control.gate() == "sending"  # what a worker reads before a chunk
    await control.record_chunk(20, 3, 1)  # … and records after it
    status = await manager.campaigns.status("t1", "june")
    assert (status.sent, status.bounced, status.failed, status.pending) == (20, 3, 1, 76)
    assert status.started_at is not None
    assert status.rate > 0
    assert status.eta_seconds == pytest.approx(76 / status.rate, abs=0.1)


async def test_a_send_interrupted_while_adding_batches_is_finished_by_sending_again(
        manager: QueueManager) -> None:
    await _save(manager)
    client = await manager.client()
    control = CampaignControl(client, manager.settings.key_prefix, "t1", "june")
    # What a producer that died after starting the send and before its last bulk left.
    assert await control.start("sending", 30, 3, 0) == 1
    result = await manager.campaigns.send(
        "t1", "june", [{"email": f"r{i}@example.com"} for i in range(30)], batch_size=10)
    assert (result.created, result.batches) == (True, 3)
    assert await _email_jobs(manager) == 3
    assert not (await manager.campaigns.send("t1", "june", [{"email": "x@example.com"}])
                ).created


def _csv(tmp_path: Path, count: int) -> Path:
    """``count`` rows; row 3 repeats row 1's address shouted, row 5 is bad."""
    lines = ["email,name,plan"]
    for i in range(1, count + 1):
        email = {3: "R1@EXAMPLE.COM", 5: "not-an-address"}.get(i, f"r{i}@example.com")
        lines.append(f"{email},Reader {i},p{i}")
    path = tmp_path / "recipients.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _batched_emails(manager: QueueManager, batches: int) -> list[str]:
    emails: list[str] = []
    for index in range(batches):
        job = await manager.get_job("email", batch_job_id("t1", "june", index))
        assert job is not None
        emails += [r["email"] for r in job.data["recipients"]]
    return emails


async def test_a_file_sent_from_an_open_handle_is_read_once_and_enqueued_whole(
        manager: QueueManager, tmp_path: Path) -> None:
    # A handle can be read only once: the rows are checked and enqueued in one pass.
    await _save(manager)
    path = _csv(tmp_path, 25)
    with path.open("rb") as handle:
        result = await manager.campaigns.send("t1", "june", rows_from_csv(handle),
                                              partial=True, batch_size=10)
    assert (result.recipients, result.duplicates, result.batches) == (23, 1, 3)
    assert [(r.row, r.field) for r in result.skipped] == [(5, "email")]
    expected = [f"r{i}@example.com" for i in range(1, 26) if i not in (3, 5)]
    assert await _batched_emails(manager, 3) == expected
    first = await manager.get_job("email", batch_job_id("t1", "june", 0))
    assert first is not None
    assert first.data["recipients"][0] == {
        "email": "r1@example.com", "name": "Reader 1", "personalizations": {"plan": "p1"}}
    assert await _email_jobs(manager) == 3


async def test_a_file_with_bad_rows_enqueues_nothing_unless_partial_and_sends_once(
        manager: QueueManager, tmp_path: Path) -> None:
    await _save(manager)
    path = _csv(tmp_path, 12)
    with pytest.raises(RecipientsError) as caught:
        await manager.campaigns.send("t1", "june", rows_from_csv(path), batch_size=5)
    assert [r.row for r in caught.value.rows] == [5]
    assert await _email_jobs(manager) == 0
    assert (await manager.campaigns.status("t1", "june")).state == "draft"
    first = await manager.campaigns.send("t1", "june", rows_from_csv(path), partial=True,
                                         batch_size=5)
    again = await manager.campaigns.send("t1", "june", rows_from_csv(path), partial=True,
                                         batch_size=5)
    assert (first.created, first.recipients, first.batches) == (True, 10, 2)
    assert (again.created, again.batches) == (False, 0)
    assert await _email_jobs(manager) == 2


async def test_a_one_shot_generator_of_rows_is_enqueued_whole(manager: QueueManager) -> None:
    await _save(manager)
    rows = ((i, {"email": f"g{i}@example.com"}) for i in range(1, 31))
    result = await manager.campaigns.send("t1", "june", rows, batch_size=7)
    assert (result.recipients, result.batches) == (30, 5)
    assert await _batched_emails(manager, 5) == [f"g{i}@example.com" for i in range(1, 31)]
