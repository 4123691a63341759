"""The CLI in-process with Typer's CliRunner, against a real Redis under the test prefix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from newsletter_queue import cli
from newsletter_queue.cli import app, with_concurrency
from tests.conftest import make_settings

runner = CliRunner()


@pytest.fixture
def env(redis_url: str, prefix: str, tmp_path: Path, redis_client: Any) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "NLQ_KEY_PREFIX": prefix, "NLQ_STATE_DIR": str(tmp_path)}


def nlq(env: dict[str, str], *args: str, code: int = 0, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), env=env, input=input)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


def test_test_jobs_then_stats_and_inspect(env: dict[str, str]) -> None:
    created = json.loads(nlq(env, "test-jobs", "--json"))
    assert {q: len(ids) for q, ids in created.items()} == {"email": 3, "analytics": 2, "ai": 3}
    stats = json.loads(nlq(env, "stats", "--json"))
    assert stats["ai"]["waiting"] == 3
    assert stats["email"]["pending"] == 3
    assert "analytics" in nlq(env, "stats")
    inspected = json.loads(nlq(env, "inspect", "analytics", "--json"))
    assert inspected["metrics"]["counts"]["waiting"] == 2
    assert "newest waiting" in nlq(env, "inspect", "analytics")
    assert "unknown queue 'sms'" in nlq(env, "inspect", "sms", code=1)


def test_health_exit_codes_follow_the_monitor(env: dict[str, str], tmp_path: Path) -> None:
    assert json.loads(nlq(env, "health", "--json"))["status"] == "healthy"
    nlq(env, "pause", "email")
    data = json.loads(nlq(env, "health", "--json", code=1))
    assert data["queues"]["email"]["reasons"] == ["queue is paused"]
    assert "overall: warning" in nlq(env, "health", code=1)
    nlq(env, "resume", "email")
    down = {**env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    assert json.loads(nlq(down, "health", "--json", code=2))["status"] == "critical"


def test_errors_and_report(env: dict[str, str], redis_url: str, prefix: str) -> None:
    assert json.loads(nlq(env, "errors", "--json")) == []
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        for queue, job in (("ai", "a-1"), ("email", "e-1")):
            client.xadd(f"{prefix}:monitor:errors", {
                "queue": queue, "job_id": job, "name": "n", "error": f"{queue} broke",
                "error_type": "ValueError", "attempt": 1, "max_attempts": 3, "final": 0,
                "ts": 1_700_000_000_000})
    found = json.loads(nlq(env, "errors", "--json", "--queue", "ai"))
    assert [e["job_id"] for e in found] == ["a-1"]
    assert [e["job_id"] for e in json.loads(nlq(env, "errors", "--json"))] == ["e-1", "a-1"]
    assert "email broke" in nlq(env, "errors", "--limit", "1")
    md = nlq(env, "report")
    assert md.startswith("# Queue report")
    assert "## Recent errors" in md
    assert json.loads(nlq(env, "report", "--format", "json"))["status"] == "healthy"
    assert "md or json" in nlq(env, "report", "--format", "xml", code=2)


def test_admin_commands_change_redis(env: dict[str, str]) -> None:
    nlq(env, "test-jobs")
    assert "email paused" in nlq(env, "pause", "email")
    assert json.loads(nlq(env, "stats", "--json"))["email"]["is_paused"] is True
    nlq(env, "resume", "email")
    assert "removed 0 completed job(s) from ai" in nlq(env, "clean", "ai")
    assert "0 failed ai job(s)" in nlq(env, "retry", "ai")
    nlq(env, "clear", "ai", input="n\n", code=1)  # declined: nothing removed
    assert json.loads(nlq(env, "stats", "--json"))["ai"]["waiting"] == 3
    assert "cleared ai: 3 job(s)" in nlq(env, "clear", "ai", "--yes")
    assert json.loads(nlq(env, "stats", "--json"))["ai"]["waiting"] == 0
    off = {**env, "NLQ_DEV_MODE": "false"}
    assert "outside dev mode" in nlq(off, "clear", "all", "--yes", code=1)
    assert "cleared email" in nlq(off, "clear", "all", "--yes", "--force")


def test_perf_export_and_monitor_snapshot(env: dict[str, str], tmp_path: Path) -> None:
    result = json.loads(nlq(env, "perf", "--jobs", "120", "--json"))
    assert result["jobs_created"] == 120
    assert result["drained"] is None
    assert "created 30 analytics job(s)" in nlq(env, "perf", "--jobs", "30")
    exported = json.loads(nlq(env, "export", "analytics", "--json"))
    assert exported["jobs"] == 150
    assert Path(exported["path"]).is_file()
    out = tmp_path / "ai.ndjson"
    assert f"0 job(s) written to {out}" in nlq(env, "export", "ai", "--output", str(out))
    snapshot = json.loads(nlq(env, "monitor", "--json"))
    assert snapshot["queues"]["analytics"]["counts"]["waiting"] == 150
    assert "analytics" in nlq(env, "monitor", "--once")
    assert "analytics" in nlq(env, "monitor", "--duration", "0.3", "--interval", "0.1")


def test_up_calls_run_system_with_its_options(env: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import newsletter_queue.launch as runner_module

    seen: dict[str, Any] = {}

    async def fake_run_system(settings: Any, *, host: str, port: int, demo: bool) -> None:
        seen.update(prefix=settings.key_prefix, host=host, port=port, demo=demo)

    monkeypatch.setattr(runner_module, "run_system", fake_run_system)
    nlq(env, "up", "--port", "8123", "--demo")
    assert seen == {"prefix": env["NLQ_KEY_PREFIX"], "host": "127.0.0.1", "port": 8123,
                    "demo": True}
    out = nlq(env, "up", "--host", "0.0.0.0", code=1)
    assert "NLQ_API_TOKEN" in out


def test_worker_validates_queues_and_sets_concurrency(env: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert "unknown queue 'sms'" in nlq(env, "worker", "--queues", "email,sms", code=1)
    import newsletter_queue.launch as runner_module

    seen: dict[str, Any] = {}

    async def fake_worker(settings: Any, queues: Any) -> None:
        seen.update(queues=queues, email=settings.queues["email"].concurrency,
                    ai=settings.queues["ai"].concurrency)

    monkeypatch.setattr(runner_module, "run_worker_process", fake_worker)
    nlq(env, "worker", "--queues", "email, ai", "--concurrency", "7")
    assert seen == {"queues": ["email", "ai"], "email": 7, "ai": 7}


def test_with_concurrency_changes_only_the_named_queues() -> None:
    settings = make_settings()
    changed = with_concurrency(settings, ["ai"], 9)
    assert changed.queues["ai"].concurrency == 9
    assert changed.queues["email"].concurrency == settings.queues["email"].concurrency
    assert changed.queues["ai"].rate_limit == settings.queues["ai"].rate_limit
    assert all(q.concurrency == 4 for q in with_concurrency(settings, None, 4).queues.values())


def test_api_refuses_a_public_bind_without_a_token(env: dict[str, str]) -> None:
    assert "refusing to bind" in nlq(env, "api", "--host", "0.0.0.0", code=1)
    assert cli.HEALTH_EXIT == {"healthy": 0, "warning": 1, "critical": 2}
