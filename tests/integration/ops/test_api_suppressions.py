"""The suppression routes and erasure against the real app and records store (each test on
SQLite and on PostgreSQL): add, import a CSV, list, get, remove, erase, the JSON errors
and the access rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from newsletter_queue.manager import QueueManager
from newsletter_queue.services.store import DeliveryRecord
from tests.integration.ops.test_api_security import TOKEN, with_token
from tests.support.postgres import BOTH_STORES

__all__ = ["with_token"]  # the fixture, shared with the security tests

S = "/api/tenants/t1/suppressions"


@pytest.fixture
async def api(settings: Settings, manager: QueueManager) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, manager=manager)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1:8000") as client:
        yield client


@BOTH_STORES
async def test_add_import_list_get_remove(api: httpx.AsyncClient) -> None:
    r = await api.post(S, json={"emails": ["Ann@example.com", "bob@example.com"]})
    assert r.status_code == 201, r.text
    assert r.json() == {"added": 2, "already": 0}
    csv = "email,name\nann@example.com,Ann\nnot-an-address,X\ncy@example.com,Cy\n"
    r = await api.post(f"{S}/import?reason=complaint", content=csv,
                       headers={"Content-Type": "text/csv; charset=utf-8"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["added"], body["already"]) == (1, 1)
    assert body["bad_rows"] == [{"row": 2, "field": "email",
                                 "message": body["bad_rows"][0]["message"]}]
    page = (await api.get(f"{S}?page_size=2")).json()
    assert (page["total"], len(page["suppressions"])) == (3, 2)
    assert page["suppressions"][0]["email"] == "cy@example.com"  # newest first
    assert (await api.get(f"{S}?reason=complaint")).json()["total"] == 1
    ann = (await api.get(f"{S}/ANN@example.com")).json()
    assert (ann["email"], ann["reason"]) == ("Ann@example.com", "manual")
    assert (await api.delete(f"{S}/ann@example.com")).json() == {"removed": True}
    assert (await api.get(f"{S}/ann@example.com")).status_code == 404
    assert (await api.delete(f"{S}/ann@example.com")).status_code == 404


@BOTH_STORES
async def test_bad_input_is_a_json_4xx_and_lists_nothing(api: httpx.AsyncClient) -> None:
    for body in ({"emails": []}, {"emails": ["a@example.com"], "reason": "bored"},
                 {"emails": ["a@example.com"], "extra": 1}, {"emails": "a@example.com"}):
        r = await api.post(S, json=body)
        assert r.status_code == 422, (body, r.text)
        assert "error" in r.json()
    r = await api.post(S, json={"emails": ["ok@example.com", "no-at-sign"]})
    assert r.status_code == 422
    assert "emails[1]" in r.text
    r = await api.post(f"{S}/import", content="{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    r = await api.post(f"{S}/import", content="name\nAnn\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 422
    assert "email" in r.json()["error"]
    assert (await api.get("/api/tenants/bad%20tenant/suppressions")).status_code == 422
    assert (await api.get(S)).json()["total"] == 0


@BOTH_STORES
async def test_erasure_over_http(api: httpx.AsyncClient, manager: QueueManager) -> None:
    store = await manager.store()
    await store.record_deliveries([DeliveryRecord("t1", "june", "ann@example.com", "sent")])
    r = await api.delete("/api/tenants/t1/recipients/Ann@example.com")
    assert r.status_code == 200, r.text
    assert r.json() == {"deliveries": 1, "events": 0, "suppression_created": True}
    assert await store.get_delivery("t1", "june", "ann@example.com") is None
    entry = (await api.get(f"{S}/ann@example.com")).json()
    assert (entry["email"], entry["reason"]) == (None, "manual")
    assert (await api.delete("/api/tenants/t1/recipients/not-an-address")).status_code == 422


async def test_the_routes_keep_the_api_access_rules(with_token: Settings) -> None:
    app = create_app(with_token, host="0.0.0.0")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://news.example.com") as client:
        assert (await client.get(S)).status_code == 401
        assert (await client.post(S, json={"emails": ["a@example.com"]})).status_code == 401
        assert (await client.delete("/api/tenants/t1/recipients/a@example.com")
                ).status_code == 401
        ok = await client.get(S, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert ok.json()["total"] == 0
