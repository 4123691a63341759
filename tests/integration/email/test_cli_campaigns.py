"""``newsletter-queue campaign …`` in-process with Typer's CliRunner, against real Redis
and the records store (each test on SQLite and on PostgreSQL, the CLI told by
``DATABASE_URL``): save/send from real files, status, list, recipient, pause, resume,
cancel, bad rows (exit 1 with their numbers), and ``--follow`` ending by itself when a
real worker completes the campaign (SMTP sink) or when it is cancelled."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from newsletter_queue.cli import app
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.system import System
from tests.support.helpers import wait_for
from tests.support.postgres import BOTH_STORES

pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL

runner = CliRunner()


@pytest.fixture
def env(redis_url: str, prefix: str, tmp_path: Path, redis_client: Any,
        database_url: str | None) -> dict[str, str | None]:
    """The CLI's environment: this test's Redis prefix and records store (the same ones
    as the ``settings`` fixture's; ``None`` unsets ``DATABASE_URL``: SQLite in
    ``tmp_path``)."""
    return {"REDIS_URL": redis_url, "NLQ_KEY_PREFIX": prefix, "NLQ_STATE_DIR": str(tmp_path),
            "DATABASE_URL": database_url, "COLUMNS": "200"}


def nlq(env: dict[str, str | None], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, ["campaign", *args], env=env)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


def _files(tmp_path: Path) -> tuple[Path, Path]:
    text = tmp_path / "body.txt"
    text.write_text("Dear {{ name }} of {{ personalizations.city }}", encoding="utf-8")
    csv = tmp_path / "readers.csv"
    csv.write_text("email,name,city\nann@example.com,Ann,Oslo\nbob@example.com,Bob,Rome\n"
                   "ANN@example.com,Ann again,Oslo\n", encoding="utf-8")
    return text, csv


def test_save_send_status_list_pause_resume_cancel(env: dict[str, str | None],
                                                   tmp_path: Path) -> None:
    text, csv = _files(tmp_path)
    out = nlq(env, "save", "t1", "june", "--subject", "Hi {{ name }}", "--text-file",
              str(text), "--from", "News <news@example.com>")
    assert "saved june (t1) as a draft" in out
    assert json.loads(nlq(env, "status", "t1", "june", "--json"))["state"] == "draft"
    at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    sent = json.loads(nlq(env, "send", "t1", "june", str(csv), "--send-at", at, "--json"))
    assert (sent["created"], sent["state"], sent["recipients"], sent["duplicates"]) == (
        True, "scheduled", 2, 1)
    assert "was sent before (scheduled): nothing added" in nlq(env, "send", "t1", "june",
                                                                str(csv))
    status = json.loads(nlq(env, "status", "t1", "june", "--json"))
    assert (status["state"], status["total"], status["pending"]) == ("scheduled", 2, 2)
    assert "june (t1): scheduled" in nlq(env, "status", "t1", "june")

    nlq(env, "save", "t1", "july", "--subject", "July", "--text-file", str(text))
    listed = json.loads(nlq(env, "list", "t1", "--json"))
    assert [c["campaign_id"] for c in listed["campaigns"]] == ["july", "june"]
    assert listed["total"] == 2
    assert "july" in nlq(env, "list", "t1")
    assert json.loads(nlq(env, "list", "t1", "--page", "2", "--page-size", "1", "--json"))[
        "campaigns"][0]["campaign_id"] == "june"

    assert "june (t1): paused" in nlq(env, "pause", "t1", "june")
    assert "cannot pause" in nlq(env, "pause", "t1", "june", code=1)
    assert "june (t1): scheduled" in nlq(env, "resume", "t1", "june")
    assert "june (t1): cancelled" in nlq(env, "cancel", "t1", "june")
    assert "it is cancelled" in nlq(env, "resume", "t1", "june", code=1)
    assert "no campaign 'ghost'" in nlq(env, "status", "t1", "ghost", code=1)
    assert "no delivery recorded" in nlq(env, "recipient", "t1", "june", "ann@example.com",
                                         code=1)


def test_bad_rows_exit_1_with_their_numbers_and_nothing_is_sent(
        env: dict[str, str | None], tmp_path: Path) -> None:
    text, _ = _files(tmp_path)
    nlq(env, "save", "t1", "june", "--subject", "Hi", "--text-file", str(text))
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"email": "ok@example.com"}\n{"email": "nope"}\n\n[1, 2]\n',
                   encoding="utf-8")
    out = nlq(env, "send", "t1", "june", str(bad), code=1)
    assert "2 bad row(s)" in out
    assert "row 2, email:" in out
    assert "row 4: not a JSON object" in out
    assert json.loads(nlq(env, "status", "t1", "june", "--json"))["state"] == "draft"
    out = nlq(env, "send", "t1", "june", str(bad), "--partial", "--format", "ndjson")
    assert "1 recipient(s) in 1 batch(es), sending" in out
    assert "skipped row 2, email:" in out
    bad_template = tmp_path / "bad.html"
    bad_template.write_text("<p>\n{% if %}</p>", encoding="utf-8")
    out = nlq(env, "save", "t1", "july", "--subject", "Hi", "--html-file", str(bad_template),
              code=1)
    assert "html, line 2" in out


async def _invoke(env: dict[str, str | None], *args: str) -> Any:
    """The CLI in a thread (it runs its own event loop) while this loop runs workers."""
    return await asyncio.wait_for(asyncio.to_thread(
        runner.invoke, app, ["campaign", *args], env=env), timeout=150)


@pytest.mark.timeout(240)
async def test_send_follow_ends_when_a_real_worker_completes_the_campaign(
        env: dict[str, str | None], tmp_path: Path, system: System, sink: SmtpSink,
        manager: QueueManager) -> None:
    services = await WorkerServices(system.settings, smtp_url=sink.url).open()
    workers = system.start_workers(services.registry(), ["email", "analytics"])
    services.attach_hooks(workers)
    system.close_later(services.close)
    text, csv = _files(tmp_path)
    assert (await _invoke(env, "save", "t1", "june", "--subject", "Hi {{ name }}",
                          "--text-file", str(text))).exit_code == 0
    result = await _invoke(env, "send", "t1", "june", str(csv), "--follow")
    assert result.exit_code == 0, result.output
    assert "june: 2 recipient(s) in 1 batch(es), sending" in result.output
    assert "june (t1): completed" in result.output
    assert sink.handler.counts == {"ann@example.com": 1, "bob@example.com": 1}
    assert any("Dear Ann of Oslo" in m.text for m in sink.handler.recent)
    status = await manager.campaigns.status("t1", "june")
    assert (status.state, status.sent) == ("completed", 2)

    lookup = await _invoke(env, "recipient", "t1", "june", "ann@example.com", "--json")
    assert lookup.exit_code == 0, lookup.output
    delivery = json.loads(lookup.stdout)
    assert (delivery["status"], delivery["smtp_code"]) == ("sent", 250)
    assert delivery["message_id"]
    assert "status: sent" in (await _invoke(env, "recipient", "t1", "june",
                                            "bob@example.com")).output


@pytest.mark.timeout(240)
async def test_follow_ends_when_the_campaign_is_cancelled(
        env: dict[str, str | None], tmp_path: Path, manager: QueueManager) -> None:
    _, csv = _files(tmp_path)
    await manager.campaigns.save("t1", "june", subject="Hi", text="x")
    at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    follow = asyncio.ensure_future(_invoke(env, "send", "t1", "june", str(csv),
                                           "--send-at", at, "--follow"))

    async def scheduled() -> bool:
        return (await manager.campaigns.status("t1", "june")).state == "scheduled"

    await wait_for(scheduled, timeout=60, message="the CLI to schedule the campaign")
    assert not follow.done()  # scheduled: --follow is still watching
    await manager.campaigns.cancel("t1", "june")
    result = await follow
    assert result.exit_code == 0, result.output
    assert "june (t1): cancelled" in result.output
