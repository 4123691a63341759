"""``newsletter-queue suppression …`` and ``erase`` in-process with Typer's CliRunner,
against real Redis and the records store (SQLite and PostgreSQL): add, import a file,
list, remove, erase — each checked in the store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from newsletter_queue.cli import app
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.store import DeliveryRecord
from tests.integration.email.test_cli_campaigns import env
from tests.support.postgres import BOTH_STORES

__all__ = ["env"]  # the fixture, shared with the campaign CLI tests
pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL

runner = CliRunner()


async def nlq(env: dict[str, str | None], *args: str, code: int = 0) -> str:
    """The CLI in a thread: it runs its own event loop, this test runs one too."""
    result = await asyncio.to_thread(runner.invoke, app, list(args), env=env)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result.output


async def test_add_import_list_remove_erase(env: dict[str, str | None], tmp_path: Path,
                                           manager: QueueManager) -> None:
    out = await nlq(env, "suppression", "add", "t1", "ann@example.com", "bob@example.com")
    assert "2 address(es) added" in out
    assert "1 address(es) added" in await nlq(env, "suppression", "add", "t1", "ANN@example.com",
                                        "cy@example.com", "--reason", "complaint")
    assert "not an email address" in await nlq(env, "suppression", "add", "t1", "nope", code=1)
    ndjson = tmp_path / "list.ndjson"
    ndjson.write_text('{"email": "dee@example.com"}\n{"email": "bad"}\n'
                      '{"email": "bob@example.com"}\n', encoding="utf-8")
    out = await nlq(env, "suppression", "import", "t1", str(ndjson))
    assert "1 added, 1 already listed" in out
    assert "row 2, email:" in out
    listed = json.loads(await nlq(env, "suppression", "list", "t1", "--json"))
    assert listed["total"] == 4
    assert {e["email"] for e in listed["suppressions"]} == {
        "ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"}
    complaint = json.loads(await nlq(env, "suppression", "list", "t1", "--reason", "complaint",
                               "--json"))
    assert [e["email"] for e in complaint["suppressions"]] == ["cy@example.com"]
    assert "removed" in await nlq(env, "suppression", "remove", "t1", "BOB@example.com")
    await nlq(env, "suppression", "remove", "t1", "bob@example.com", code=1)

    store = await manager.store()
    await store.record_deliveries([DeliveryRecord("t1", "june", "ann@example.com", "sent")])
    erased = json.loads(await nlq(env, "erase", "t1", "Ann@example.com", "--json"))
    assert erased == {"deliveries": 1, "events": 0, "suppression_created": False}
    assert await store.get_delivery("t1", "june", "ann@example.com") is None
    assert "(erased)" in await nlq(env, "suppression", "list", "t1")
    entry = await store.get_suppression("t1", "ann@example.com")
    assert entry is not None
    assert entry.email is None
