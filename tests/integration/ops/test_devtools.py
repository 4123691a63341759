"""DevTools against a real Redis (and a real engine worker for the drain timing)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from newsletter_queue.config import Settings
from newsletter_queue.dev import DevTools
from newsletter_queue.engine import Worker
from newsletter_queue.errors import ConfigurationError, JobValidationError, QueueNotFoundError
from newsletter_queue.manager import QueueManager
from tests.conftest import make_settings
from tests.support.helpers import wait_for


async def test_create_test_jobs_fills_all_three_queues(
        manager: QueueManager, settings: Settings) -> None:
    tools = DevTools(settings, manager=manager)
    created = await tools.create_test_jobs()
    assert {q: len(ids) for q, ids in created.items()} == {"email": 3, "analytics": 2, "ai": 3}
    stats = await manager.get_all_queue_stats()
    assert stats["email"].waiting + stats["email"].prioritized == 3
    assert stats["analytics"].waiting == 2
    assert stats["ai"].waiting == 3
    email = await manager.get_job("email", created["email"][0])
    assert email is not None
    assert email.data["content"]["subject"].startswith("Dev test")
    ai_types = {(await manager.get_job("ai", i)).data["type"]  # type: ignore[union-attr]
                for i in created["ai"]}
    assert ai_types == {"content-generation", "subject-optimization", "campaign-insights"}


async def test_inspect_reports_counts_jobs_and_health(
        manager: QueueManager, settings: Settings) -> None:
    tools = DevTools(settings, manager=manager)
    await tools.create_test_jobs()
    data = await tools.inspect("analytics")
    assert data["metrics"]["counts"]["waiting"] == 2
    assert [j["name"] for j in data["jobs"]["waiting"]] == ["daily-aggregation",
                                                           "campaign-complete"]
    assert data["health"]["status"] in ("healthy", "warning")
    assert data["config"]["concurrency"] == 3
    json.dumps(data)  # ready for the API and --json
    with pytest.raises(QueueNotFoundError):
        await tools.inspect("nope")


async def test_clear_obliterates_only_the_chosen_queue(
        manager: QueueManager, settings: Settings) -> None:
    tools = DevTools(settings, manager=manager)
    await tools.create_test_jobs()
    await manager.pause_queue("email")
    assert await tools.clear("email") == {"email": 3}
    stats = await manager.get_all_queue_stats()
    assert stats["email"].pending == 0
    assert not stats["email"].is_paused
    assert stats["ai"].waiting == 3
    assert await tools.clear("all") == {"email": 0, "analytics": 2, "ai": 3}
    assert all(s.pending == 0 for s in (await manager.get_all_queue_stats()).values())


async def test_clear_refuses_outside_dev_mode_unless_forced(
        redis_url: str, prefix: str, tmp_path: Path, redis_client: Any) -> None:
    settings = make_settings(redis_url=redis_url, key_prefix=prefix, state_dir=tmp_path,
                             dev_mode=False)
    async with DevTools(settings) as tools:
        await tools.manager.schedule_analytics_job("campaign-complete", {
            "campaignId": "c", "tenantId": "t", "eventType": "campaign-complete"})
        with pytest.raises(ConfigurationError, match="outside dev mode"):
            await tools.clear("analytics")
        assert (await tools.manager.get_queue_stats("analytics")).waiting == 1
        assert await tools.clear("analytics", force=True) == {"analytics": 1}


async def test_performance_test_without_workers_only_enqueues(
        manager: QueueManager, settings: Settings) -> None:
    tools = DevTools(settings, manager=manager)
    seen: list[tuple[str, int, int]] = []
    result = await tools.performance_test(1200, on_progress=lambda *a: seen.append(a))
    assert result.jobs_created == 1200
    assert result.workers == 0
    assert result.drained is None
    assert result.rate > 0
    assert result.duration_ms > 0
    assert seen[-1] == ("enqueue", 1200, 1200)
    assert len(seen) == 3
    assert (await manager.get_queue_stats("analytics")).waiting == 1200
    with pytest.raises(JobValidationError):
        await tools.performance_test(0)


async def test_performance_test_times_the_drain_when_workers_run(
        manager: QueueManager, settings: Settings,
        make_worker: Callable[..., Worker]) -> None:
    async def quick(job: Any) -> None:
        return None

    make_worker("analytics", quick, concurrency=10)
    tools = DevTools(settings, manager=manager)

    async def connected() -> bool:
        return bool((await tools.monitor_.get_workers())["analytics"])

    await wait_for(connected, message="the worker to connect")
    result = await tools.performance_test(300, drain_timeout_s=30)
    assert result.workers == 1
    assert result.drained is True
    assert result.drain_ms is not None
    assert result.drain_ms > 0
    assert (await manager.get_queue_stats("analytics")).completed == 300


async def test_export_writes_every_job_as_ndjson(
        manager: QueueManager, settings: Settings, tmp_path: Path) -> None:
    tools = DevTools(settings, manager=manager)
    await tools.create_test_jobs()
    await tools.performance_test(600, queue="analytics")
    path = await tools.export_queue_data("analytics")
    assert path.parent == settings.state_dir / "exports"
    assert path.suffix == ".ndjson"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 602
    assert {r["state"] for r in rows} == {"waiting"}
    assert len({r["id"] for r in rows}) == 602
    custom = await tools.export_queue_data("email", tmp_path / "out" / "email.ndjson")
    assert len(custom.read_text().splitlines()) == 3
