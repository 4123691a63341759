"""The campaign lookups ``Campaigns`` reads (a tenant's campaigns, one delivery, an
address's deliveries), on SQLite and PostgreSQL alike (see conftest)."""

from __future__ import annotations

from newsletter_queue.services.store import CampaignRecord, DeliveryRecord, Store
from tests.support.postgres import create_database, drop_database, store_url


async def test_a_tenants_campaigns_newest_first_in_pages(store: Store) -> None:
    for n in range(5):
        await store.upsert_campaign(CampaignRecord("t1", f"c{n}", f"Subject {n}"))
    await store.upsert_campaign(CampaignRecord("t2", "other", "Not t1's"))

    first = await store.list_campaigns("t1", limit=2)
    second = await store.list_campaigns("t1", limit=2, offset=2)
    rest = await store.list_campaigns("t1", limit=10, offset=4)
    assert [c.campaign_id for c in first + second + rest] == ["c4", "c3", "c2", "c1", "c0"]
    assert first[0].subject == "Subject 4"
    assert await store.count_campaigns("t1") == 5
    assert await store.count_campaigns("t2") == 1
    assert await store.list_campaigns("nobody") == []


async def test_one_delivery_is_found_case_blind_and_only_in_its_campaign(store: Store) -> None:
    await store.record_deliveries([
        DeliveryRecord("t1", "june", "Ann@Example.com", "sent", message_id="<m1@x>",
                       smtp_code=250, smtp_response="2.0.0 queued as ABC"),
        DeliveryRecord("t1", "june", "bob@example.com", "bounced", smtp_code=550,
                       smtp_response="5.1.1 user unknown"),
    ])
    ann = await store.get_delivery("t1", "june", "ann@EXAMPLE.com")
    assert ann is not None
    assert (ann.status, ann.smtp_code, ann.smtp_response, ann.message_id) == (
        "sent", 250, "2.0.0 queued as ABC", "<m1@x>")
    bob = await store.get_delivery("t1", "june", "bob@example.com")
    assert bob is not None
    assert (bob.status, bob.smtp_code) == ("bounced", 550)
    assert await store.get_delivery("t1", "july", "ann@example.com") is None
    assert await store.get_delivery("t2", "june", "ann@example.com") is None


async def _found_by_its_own_spelling(store: Store) -> None:
    # The address as recorded (check_email keeps the local part's case), then asked for
    # as written and with its ASCII letters in another case.
    email = "JÜRGEN@example.com"
    await store.record_deliveries([DeliveryRecord("t1", "june", email, "sent")])
    for asked in (email, "JÜRGEN@EXAMPLE.COM", "jÜrgen@Example.com"):
        found = await store.get_delivery("t1", "june", asked)
        assert found is not None, asked
        assert found.email == email
        assert [d.email for d in await store.deliveries_to("t1", asked)] == [email], asked
    assert await store.get_delivery("t1", "june", "jurgen@example.com") is None


async def test_an_address_with_a_non_ascii_capital_is_found_by_its_own_spelling(
        store: Store) -> None:
    # SQLite's lower() folds ASCII letters only: compared with Python's lower() of the
    # same address, such an address was never found there, not even spelt as recorded.
    await _found_by_its_own_spelling(store)


async def test_the_same_in_a_postgresql_database_whose_ctype_is_c(postgres_server: str
                                                                  ) -> None:
    # PostgreSQL's lower() folds ASCII letters only too when the database's LC_CTYPE is C
    # (a common choice for speed): the same miss on PostgreSQL.
    name = create_database(postgres_server, locale="C")
    try:
        async with Store(store_url(postgres_server, name)) as store:
            await _found_by_its_own_spelling(store)
    finally:
        drop_database(postgres_server, name)


async def test_an_addresses_deliveries_across_campaigns_newest_first(store: Store) -> None:
    for campaign in ("may", "june", "july"):
        await store.record_deliveries([DeliveryRecord("t1", campaign, "ann@example.com",
                                                      "sent")])
    await store.record_deliveries([DeliveryRecord("t2", "june", "ann@example.com", "sent")])
    got = await store.deliveries_to("t1", "ANN@example.com")
    assert [d.campaign_id for d in got] == ["july", "june", "may"]
    assert [d.campaign_id for d in await store.deliveries_to("t1", "ann@example.com",
                                                             limit=1)] == ["july"]
    assert await store.deliveries_to("t1", "nobody@example.com") == []


async def test_a_campaign_has_results_once_something_was_delivered(store: Store) -> None:
    await store.upsert_campaign(CampaignRecord("t1", "draft", "Not sent"))
    assert not await store.has_campaign_results("t1", "draft")
    await store.record_deliveries([DeliveryRecord("t1", "sent", "a@example.com", "sent")])
    assert await store.has_campaign_results("t1", "sent")
    assert not await store.has_campaign_results("t2", "sent")
