"""The suppression list and erasure, on SQLite and PostgreSQL: addresses known by hash and
case-blind, suppressed once, per tenant; erasure leaves only the hash, still suppressed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter_queue.services.store import (
    DeliveryRecord,
    EventRecord,
    Store,
    address_hash,
)


async def test_suppress_lookup_and_remove(store: Store) -> None:
    added = await store.suppress("t1", ["Ann@Example.com", "bob@example.com",
                                        "ann@example.com", "  "], "unsubscribed",
                                 campaign_id="june")
    assert added == 2
    # Suppressed once: a second reason does not replace the first.
    assert await store.suppress("t1", ["ANN@example.com", "cy@example.com"],
                                "hard-bounce") == 1
    ann = await store.get_suppression("t1", "ann@EXAMPLE.com")
    assert ann is not None
    assert (ann.email, ann.reason, ann.campaign_id) == ("Ann@Example.com", "unsubscribed",
                                                        "june")
    assert ann.email_hash == address_hash("ann@example.com")
    chunk = ["ann@example.com", "Bob@Example.com", "dee@example.com", "CY@example.com"]
    assert await store.suppressed("t1", chunk) == {"ann@example.com", "Bob@Example.com",
                                                   "CY@example.com"}
    assert await store.suppressed("t2", chunk) == set()  # per tenant
    assert await store.suppressed("t1", []) == set()

    assert await store.count_suppressions("t1") == 3
    assert await store.count_suppressions("t1", reason="hard-bounce") == 1
    assert await store.suppression_counts("t1", "june") == {"unsubscribed": 2}
    newest = await store.list_suppressions("t1", limit=2)
    assert newest[0].email == "cy@example.com"
    assert len(newest) == 2

    assert await store.unsuppress("t1", "BOB@example.com")
    assert not await store.unsuppress("t1", "bob@example.com")
    assert await store.suppressed("t1", ["bob@example.com"]) == set()


async def test_many_addresses_in_one_call(store: Store) -> None:
    emails = [f"r{i}@example.com" for i in range(1_234)]
    assert await store.suppress("t1", emails, "manual") == 1_234
    assert await store.suppressed("t1", [*emails[::7], "x@example.com"]) == set(emails[::7])


async def test_an_unknown_reason_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="reason"):
        await store.suppress("t1", ["a@example.com"], "bored")  # type: ignore[arg-type]
    assert await store.count_suppressions("t1") == 0


async def test_erasure_keeps_only_the_hash(store: Store) -> None:
    now = datetime.now(UTC)
    await store.record_deliveries([
        DeliveryRecord("t1", c, "Ann@example.com", "sent") for c in ("may", "june")] + [
        DeliveryRecord("t1", "june", "bob@example.com", "sent"),
        DeliveryRecord("t2", "june", "ann@example.com", "sent")])
    await store.record_events([
        EventRecord("t1", "june", "ann@example.com", "opened", now),
        EventRecord("t1", "june", "ANN@example.com", "clicked", now, url="https://e.x/a"),
        EventRecord("t1", "june", "bob@example.com", "opened", now)])
    await store.suppress("t1", ["ann@example.com"], "unsubscribed", campaign_id="june")

    result = await store.erase_address("t1", "ann@EXAMPLE.com")
    assert (result.deliveries, result.events, result.suppression_created) == (2, 2, False)
    assert await store.deliveries_to("t1", "ann@example.com") == []
    assert await store.get_delivery("t1", "june", "bob@example.com") is not None
    assert await store.get_delivery("t2", "june", "ann@example.com") is not None  # other tenant
    assert await store.count_events("t1", "june") == 1
    entry = await store.get_suppression("t1", "ann@example.com")
    assert entry is not None
    assert (entry.email, entry.reason) == (None, "unsubscribed")  # the address text is gone
    assert await store.suppressed("t1", ["Ann@example.com"]) == {"Ann@example.com"}

    # An address that was not suppressed is suppressed by its erasure.
    fresh = await store.erase_address("t1", "bob@example.com")
    assert (fresh.deliveries, fresh.events, fresh.suppression_created) == (1, 1, True)
    bob = await store.get_suppression("t1", "bob@example.com")
    assert bob is not None
    assert (bob.email, bob.reason) == (None, "manual")


async def test_erasure_matches_addresses_as_the_sends_do(store: Store) -> None:
    # SQL lower() folds only ASCII on SQLite: the erasure must still find "JÜRGEN…";
    # and "_" / "%" in an address are literal, not wildcards.
    await store.record_deliveries([
        DeliveryRecord("t1", "may", "JÜRGEN_x@example.com", "sent"),
        DeliveryRecord("t1", "june", "jürgen_x@example.com", "sent"),
        DeliveryRecord("t1", "june", "jürgenAx@example.com", "sent"),
        DeliveryRecord("t1", "june", "100%@example.com", "sent"),
        DeliveryRecord("t1", "june", "1000@example.com", "sent")])
    result = await store.erase_address("t1", "Jürgen_X@example.com")
    assert result.deliveries == 2
    assert await store.get_delivery("t1", "june", "jürgenAx@example.com") is not None
    assert (await store.erase_address("t1", "100%@example.com")).deliveries == 1
    assert await store.get_delivery("t1", "june", "1000@example.com") is not None
    assert await store.suppressed("t1", ["jürgen_x@EXAMPLE.com"]) == {"jürgen_x@EXAMPLE.com"}
