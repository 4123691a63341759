"""QueueAdmin: the one service under the API, the CLI, DevTools and the manager.

Each test drives the service from Python and checks that another interface gives the
same answer, or that a check the API used to make alone (the concurrent replay) now
holds everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from newsletter_queue.admin import QueueAdmin
from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from newsletter_queue.dev import DevTools
from newsletter_queue.engine.states import JOB_STATES, OVERVIEW_STATES
from newsletter_queue.errors import (
    AdminConflictError,
    DeadLetterNotFoundError,
    DeadLetterReplayedError,
    JobNotFoundError,
    JobValidationError,
    QueueNotFoundError,
)
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.store import DeadLetterRecord, Store

AI_DATA = {"tenantId": "t", "type": "subject-optimization", "data": {"subjects": ["A"]}}


def _letter(**overrides: Any) -> DeadLetterRecord:
    fields: dict[str, Any] = {
        "queue": "ai", "job_id": "old-1", "job_name": "subject-optimization",
        "data": AI_DATA, "error": "provider exploded", "attempts": 3,
        "failed_at": datetime.now(UTC)}
    return DeadLetterRecord(**{**fields, **overrides})


class RacedStore(Store):
    """A real store on which another replayer marks the letter between our read and our
    mark — the interleaving two simultaneous replays produce, made certain."""

    async def get_dead_letter(self, id: int) -> DeadLetterRecord | None:
        letter = await super().get_dead_letter(id)
        await super().mark_dead_letter_replayed(id, "the-other-replay")
        return letter


async def test_manager_admin_methods_are_the_admin_service(manager: QueueManager) -> None:
    job = await manager.schedule_ai_job("subject-optimization", AI_DATA)
    admin = manager.admin
    assert isinstance(admin, QueueAdmin)
    assert await manager.get_queue_stats("ai") == await admin.get_queue_stats("ai")
    assert [j.id for j in await admin.get_jobs("ai", "waiting")] == [job.id]
    assert await admin.count_jobs("ai", "waiting") == 1
    page = await admin.list_jobs("ai", "waiting", search="t")
    assert (page.total, [j.id for j in page.jobs], page.truncated) == (1, [job.id], False)
    with pytest.raises(JobValidationError):
        await admin.get_jobs("ai", "sleeping")
    with pytest.raises(QueueNotFoundError):
        await admin.get_queue_stats("nope")


async def test_job_actions_from_python_say_what_the_api_says(manager: QueueManager) -> None:
    admin = manager.admin
    job = await manager.schedule_ai_job("subject-optimization", AI_DATA)
    with pytest.raises(AdminConflictError) as info:
        await admin.retry_job("ai", job.id)
    assert str(info.value) == (f"cannot retry job {job.id}: it is waiting, not failed or "
                               "completed")
    assert info.value.details == {"state": "waiting"}
    delayed = await manager.schedule_ai_job("subject-optimization", AI_DATA, {"delay": 60_000})
    assert await admin.promote_job("ai", delayed.id) == "waiting"
    await admin.remove_job("ai", delayed.id)
    assert await admin.get_job("ai", delayed.id) is None
    with pytest.raises(JobNotFoundError):
        await admin.remove_job("ai", delayed.id)
    assert await admin.get_job_logs("ai", job.id) == []


async def test_replay_through_the_manager_reports_a_concurrent_replay(
        settings: Settings, manager: QueueManager) -> None:
    """Before, only the API noticed; the manager enqueued a second job in silence."""
    store = RacedStore.from_settings(settings)
    await store.init()
    try:
        letter_id = await store.add_dead_letter(_letter())
        admin = QueueAdmin(manager, store=lambda: _ready(store))
        with pytest.raises(AdminConflictError) as info:
            await admin.replay_dead_letter(letter_id)
        assert "replayed concurrently" in str(info.value)
        enqueued = info.value.details["job_id"]
        assert (await manager.get_job("ai", enqueued)) is not None  # said, not hidden
        replayed = await Store.get_dead_letter(store, letter_id)
        assert replayed is not None
        assert replayed.replay_job_id == "the-other-replay"
    finally:
        await store.close()


async def test_replay_validates_like_an_enqueue(settings: Settings,
                                                manager: QueueManager) -> None:
    """The API replayed with a raw ``queue.add``: an empty job name went to Redis."""
    store = await manager.store()
    nameless = await store.add_dead_letter(_letter(job_name=""))
    with pytest.raises(JobValidationError):
        await manager.replay_dead_letter(nameless)
    letter = await store.get_dead_letter(nameless)
    assert letter is not None
    assert letter.replayed_at is None  # still there to fix
    with pytest.raises(DeadLetterNotFoundError, match="no dead letter 999"):
        await manager.replay_dead_letter(999)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(
            app=create_app(settings, manager=manager, store=store)),
            base_url="http://127.0.0.1:8000") as client:
        r = await client.post(f"/api/dev/dead-letters/{nameless}/replay")
        assert r.status_code == 422
        assert r.json()["errors"] == [{"field": "name", "message": "must be 1..200 characters"}]
    assert (await manager.get_queue_stats("ai")).waiting == 0


async def test_a_replayed_letter_is_a_conflict_in_every_interface(
        manager: QueueManager, settings: Settings) -> None:
    store = await manager.store()
    letter_id = await store.add_dead_letter(_letter())
    job = await manager.replay_dead_letter(letter_id)
    with pytest.raises(DeadLetterReplayedError) as info:
        await manager.replay_dead_letter(letter_id)
    assert isinstance(info.value, JobNotFoundError)  # what callers caught before
    assert str(info.value) == f"dead letter {letter_id} was already replayed as job {job.id}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(
            app=create_app(settings, manager=manager, store=store)),
            base_url="http://127.0.0.1:8000") as client:
        r = await client.post(f"/api/dev/dead-letters/{letter_id}/replay")
    assert (r.status_code, r.json()["error"]) == (409, str(info.value))


async def test_devtools_and_dashboard_read_through_the_admin(settings: Settings,
                                                             manager: QueueManager) -> None:
    await manager.schedule_ai_job("subject-optimization", AI_DATA)
    tools = DevTools(settings, manager=manager)
    assert tools.admin is manager.admin
    assert [j["name"] for j in (await tools.inspect("ai"))["jobs"]["waiting"]] == [
        "subject-optimization"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(
            app=create_app(settings, manager=manager)),
            base_url="http://127.0.0.1:8000") as client:
        dash = (await client.get("/api/dev/queue?action=dashboard")).json()
    # The dashboard draws its cards and its state filter from these lists.
    assert dash["job_states"] == list(JOB_STATES)
    assert dash["overview_states"] == list(OVERVIEW_STATES)
    assert dash["emails"] == {}
    assert dash["mail_count"] == 0


async def _ready(store: Store) -> Store:
    return store
