"""The campaign routes against the real app, Redis and the records store (each test on
SQLite and on PostgreSQL): save, send (JSON, CSV and NDJSON uploads), status,
pause/resume/cancel, the list, recipient lookups (with a real worker and the SMTP sink),
the JSON errors (404/409/413/415/422), the body caps (an upload beyond 1 MiB goes through,
a JSON body beyond it does not) and the access rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from newsletter_queue.api import create_app
from newsletter_queue.campaigns import batch_job_id
from newsletter_queue.config import Settings
from newsletter_queue.errors import ConfigurationError
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.sink import SmtpSink
from newsletter_queue.system import System
from tests.integration.ops.test_api_security import TOKEN, client_for
from tests.support.helpers import wait_for
from tests.support.postgres import BOTH_STORES

pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL

T = "/api/tenants/t1"
CONTENT = {"subject": "Hi {{ name }}", "text": "Hello {{ name }} in {{ personalizations.city }}",
           "from_addr": "News <news@example.com>"}


@pytest.fixture
async def api(settings: Settings, manager: QueueManager) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, manager=manager)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1:8000") as client:
        yield client


async def _save(api: httpx.AsyncClient, campaign: str = "june") -> dict[str, Any]:
    r = await api.put(f"{T}/campaigns/{campaign}", json=CONTENT)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_save_send_json_then_status_and_the_list(api: httpx.AsyncClient,
                                                       manager: QueueManager) -> None:
    draft = await _save(api)
    assert (draft["campaign_id"], draft["state"], draft["total"]) == ("june", "draft", 0)
    rows = [{"email": f"r{i}@example.com", "name": f"R{i}",
             "personalizations": {"city": "Oslo"}} for i in range(25)]
    r = await api.post(f"{T}/campaigns/june/send", json={"recipients": rows,
                                                         "batch_size": 10})
    assert r.status_code == 202
    assert r.json() == {"created": True, "state": "sending", "recipients": 25, "batches": 3,
                        "duplicates": 0, "skipped": []}
    again = await api.post(f"{T}/campaigns/june/send", json={"recipients": rows})
    assert (again.status_code, again.json()["created"]) == (200, False)
    status = (await api.get(f"{T}/campaigns/june")).json()
    assert (status["state"], status["total"], status["pending"], status["batches_total"]) == (
        "sending", 25, 25, 3)
    assert status["started_at"] is None
    assert status["finished_at"] is None
    assert (await manager.get_queue_stats("email")).prioritized == 3

    await _save(api, "july")
    listed = (await api.get(f"{T}/campaigns", params={"page_size": 1})).json()
    assert (listed["tenant"], listed["page"], listed["page_size"], listed["total"]) == (
        "t1", 1, 1, 2)
    assert [c["campaign_id"] for c in listed["campaigns"]] == ["july"]
    assert listed["campaigns"][0]["status"]["state"] == "draft"
    second = (await api.get(f"{T}/campaigns", params={"page": 2, "page_size": 1})).json()
    assert [(c["campaign_id"], c["status"]["total"]) for c in second["campaigns"]] == [
        ("june", 25)]
    assert (await api.get("/api/tenants/other/campaigns")).json()["total"] == 0


async def test_a_csv_upload_over_1_mib_is_accepted_a_json_body_over_it_is_413(
        api: httpx.AsyncClient, manager: QueueManager) -> None:
    await _save(api)
    lines = ["Email,Name,city"] + [f"reader{i:06d}@example.com,Reader {i},Bergen"
                                   for i in range(40_000)]
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > 1_100_000
    r = await api.post(f"{T}/campaigns/june/send", content=body,
                       params={"batch_size": 1000}, headers={"Content-Type": "text/csv"})
    assert r.status_code == 202, r.text
    assert (r.json()["recipients"], r.json()["batches"]) == (40_000, 40)
    assert (await manager.get_queue_stats("email")).prioritized == 40
    job = await manager.get_job("email", batch_job_id("t1", "june", 39))
    assert job is not None
    assert job.data["recipients"][-1] == {"email": "reader039999@example.com",
                                          "name": "Reader 39999",
                                          "personalizations": {"city": "Bergen"}}

    await _save(api, "big-json")
    rows = [{"email": f"reader{i:06d}@example.com", "name": "x" * 20} for i in range(25_000)]
    r = await api.post(f"{T}/campaigns/big-json/send", json={"recipients": rows})
    assert r.status_code == 413
    assert "NLQ_API_MAX_BODY_BYTES" in r.json()["error"]
    assert (await api.get(f"{T}/campaigns/big-json")).json()["state"] == "draft"


async def test_an_upload_over_its_own_cap_is_413(settings: Settings,
                                                 manager: QueueManager) -> None:
    small = settings.model_copy(update={"api_max_upload_bytes": 4096})
    app = create_app(small, manager=manager)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1:8000") as api:
        await _save(api)
        body = "email\n" + "".join(f"r{i}@example.com\n" for i in range(1000))
        r = await api.post(f"{T}/campaigns/june/send", content=body,
                           headers={"Content-Type": "text/csv"})
        assert r.status_code == 413
        assert "NLQ_API_MAX_UPLOAD_BYTES" in r.json()["error"]
        ok = await api.post(f"{T}/campaigns/june/send", content="email\na@example.com\n",
                            headers={"Content-Type": "text/csv; charset=utf-8"})
        assert (ok.status_code, ok.json()["recipients"]) == (202, 1)


async def test_ndjson_upload_with_query_options_schedules_the_campaign(
        api: httpx.AsyncClient) -> None:
    await _save(api)
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    body = '{"email": "a@example.com"}\n\n{"email": "b@example.com", "name": "B"}\n'
    r = await api.post(f"{T}/campaigns/june/send", content=body,
                       params={"send_at": at.isoformat()},
                       headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 202, r.text
    assert (r.json()["state"], r.json()["recipients"]) == ("scheduled", 2)
    status = (await api.get(f"{T}/campaigns/june")).json()
    assert datetime.fromisoformat(status["send_at"]) == at


async def test_bad_rows_are_422_with_their_numbers_and_nothing_is_sent(
        api: httpx.AsyncClient, manager: QueueManager) -> None:
    await _save(api)
    csv = "email,name\nok@example.com,Ok\nnot-an-address,Bad\n\nok2@example.com,Ok2,extra\n"
    r = await api.post(f"{T}/campaigns/june/send", content=csv,
                       headers={"Content-Type": "text/csv"})
    assert r.status_code == 422
    body = r.json()
    assert [(row["row"], row["field"]) for row in body["rows"]] == [(2, "email"),
                                                                     (4, "(row)")]
    assert "row 2" in body["error"]
    assert body["truncated"] is False
    assert (await api.get(f"{T}/campaigns/june")).json()["state"] == "draft"
    assert (await manager.get_queue_stats("email")).prioritized == 0

    rows = [{"email": "ok@example.com"}, {"email": "nope"}]
    r = await api.post(f"{T}/campaigns/june/send", json={"recipients": rows})
    assert (r.status_code, [x["row"] for x in r.json()["rows"]]) == (422, [2])
    r = await api.post(f"{T}/campaigns/june/send", json={"recipients": rows, "partial": True})
    assert r.status_code == 202
    assert (r.json()["recipients"], r.json()["skipped"]) == (1, [
        {"row": 2, "field": "email", "message": r.json()["skipped"][0]["message"]}])


async def test_json_errors_404_409_415_422(api: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/campaigns/ghost"), ("POST", "/campaigns/ghost/pause"),
                         ("POST", "/campaigns/ghost/cancel")):
        r = await api.request(method, T + path)
        assert r.status_code == 404, path
        assert "no campaign 'ghost'" in r.json()["error"]
    r = await api.post(f"{T}/campaigns/ghost/send", json={"recipients": [{"email": "a@b.co"}]})
    assert r.status_code == 404
    r = await api.get(f"{T}/campaigns/ghost/recipients/a@example.com")
    assert r.status_code == 404
    assert "no delivery" in r.json()["error"]

    r = await api.put(f"{T}/campaigns/june", json={**CONTENT, "html": "<p>\n{% if %}</p>"})
    assert r.status_code == 422
    assert (r.json()["field"], r.json()["line"]) == ("html", 2)
    r = await api.put(f"{T}/campaigns/june", json={"text": "no subject"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.subject"
    r = await api.put("/api/tenants/bad%20tenant/campaigns/june", json=CONTENT)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "tenantId"

    await _save(api)
    r = await api.post(f"{T}/campaigns/june/pause")
    assert (r.status_code, r.json()["state"]) == (409, "draft")
    assert "cannot pause" in r.json()["error"]
    r = await api.post(f"{T}/campaigns/june/send", content=b"email\n",
                       headers={"Content-Type": "application/xml"})
    assert r.status_code == 415
    assert "text/csv" in r.json()["valid_types"]
    r = await api.post(f"{T}/campaigns/june/send", content=b"{not json",
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "error" in r.json()
    r = await api.post(f"{T}/campaigns/june/send", json={"recipients": []})
    assert r.status_code == 422
    assert "at least one valid recipient" in r.json()["error"]
    await api.post(f"{T}/campaigns/june/send", json={"recipients": [{"email": "a@b.co"}]})
    r = await api.put(f"{T}/campaigns/june", json=CONTENT)
    assert (r.status_code, r.json()["state"]) == (409, "sending")


async def test_pause_resume_cancel(api: httpx.AsyncClient) -> None:
    await _save(api)
    at = datetime.now(UTC) + timedelta(hours=1)
    r = await api.post(f"{T}/campaigns/june/send", json={
        "recipients": [{"email": "a@example.com"}], "send_at": at.isoformat()})
    assert r.json()["state"] == "scheduled"
    assert (await api.post(f"{T}/campaigns/june/pause")).json()["state"] == "paused"
    assert (await api.post(f"{T}/campaigns/june/pause")).status_code == 409
    assert (await api.post(f"{T}/campaigns/june/resume")).json()["state"] == "scheduled"
    cancelled = await api.post(f"{T}/campaigns/june/cancel")
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")
    r = await api.post(f"{T}/campaigns/june/resume")
    assert (r.status_code, r.json()["state"]) == (409, "cancelled")
    assert (await api.get(f"{T}/campaigns/june")).json()["state"] == "cancelled"


@pytest.mark.timeout(180)
async def test_a_worker_sends_it_and_the_recipient_lookups_say_so(
        settings: Settings, manager: QueueManager, api: httpx.AsyncClient) -> None:
    fast = settings.model_copy(update={"emails_per_second": 100_000,
                                       "emails_per_second_per_tenant": 100_000})
    async with SmtpSink() as sink:
        system = System(fast, shutdown_timeout=10)
        try:
            services = await WorkerServices(fast, smtp_url=sink.url).open()
            workers = system.start_workers(services.registry(), ["email", "analytics"])
            services.attach_hooks(workers)
            system.close_later(services.close)
            await _save(api)
            csv = "email,name,city\nann@example.com,Ann,Oslo\nbob@example.com,Bob,Rome\n"
            r = await api.post(f"{T}/campaigns/june/send", content=csv,
                               headers={"Content-Type": "text/csv"})
            assert r.status_code == 202

            async def done() -> dict[str, Any] | None:
                body = (await api.get(f"{T}/campaigns/june")).json()
                return body if body["finished_at"] and body["stats"] else None

            status = await wait_for(done, timeout=120, message="the campaign to complete")
            assert (status["state"], status["sent"], status["pending"]) == ("completed", 2, 0)
            assert status["stats"]["sent"] == 2
            assert sink.handler.counts == {"ann@example.com": 1, "bob@example.com": 1}
            assert any("Hello Ann in Oslo" in m.text for m in sink.handler.recent)

            r = await api.get(f"{T}/campaigns/june/recipients/ann@example.com")
            assert r.status_code == 200
            delivery = r.json()
            assert (delivery["status"], delivery["smtp_code"]) == ("sent", 250)
            assert delivery["message_id"]
            history = (await api.get(f"{T}/recipients/ann@example.com/campaigns")).json()
            assert history["email"] == "ann@example.com"
            assert [d["campaign_id"] for d in history["campaigns"]] == ["june"]
            assert (await api.get(f"{T}/campaigns/june/recipients/zed@example.com")
                    ).status_code == 404
            assert (await api.post(f"{T}/campaigns/june/cancel")).status_code == 409
        finally:
            await system.stop()


async def test_access_rules_apply_to_the_campaign_routes(settings: Settings) -> None:
    with_token = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    with pytest.raises(ConfigurationError, match="NLQ_API_TOKEN"):
        create_app(settings, host="0.0.0.0")
    async with client_for(with_token, "http://10.1.2.3:8000") as client:
        assert (await client.get(f"{T}/campaigns")).status_code == 401
        r = await client.put(f"{T}/campaigns/june", json=CONTENT)
        assert r.status_code == 401
        r = await client.put(f"{T}/campaigns/june", json=CONTENT,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert (r.status_code, r.json()["state"]) == (200, "draft")
    async with client_for(settings) as client:
        r = await client.put(f"{T}/campaigns/june", json=CONTENT,
                             headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        assert "cross-site" in r.json()["error"]
        r = await client.post(f"{T}/campaigns/june/send", content="email\na@example.com\n",
                              headers={"Content-Type": "text/csv",
                                       "Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        assert (await client.get(f"{T}/campaigns/june")).json()["state"] == "draft"
        r = await client.post(f"{T}/campaigns/june/pause",
                              headers={"Origin": "http://127.0.0.1:8000"})
        assert r.status_code == 409  # same origin: allowed through to the route
