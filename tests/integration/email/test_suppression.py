"""The suppression list in the email path, with real workers, the SMTP sink and the store:
a listed address is never sent, recorded *suppressed*, counted in status and stats;
transactional mail is not suppressed; an erased address stays suppressed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from newsletter_queue import JobValidationError
from newsletter_queue.campaigns.recipients import rows_from_csv
from newsletter_queue.launch import WorkerServices
from newsletter_queue.manager import QueueManager
from newsletter_queue.processors.email import SuppressionSource
from newsletter_queue.services.sink import SmtpSink
from tests.integration.email.test_campaigns_managed import _finished, services
from tests.support.helpers import wait_for_sink_total
from tests.support.postgres import BOTH_STORES

__all__ = ["services"]  # the fixture, shared with the managed-campaign tests
pytestmark = BOTH_STORES  # each test on SQLite and on PostgreSQL

READERS = [f"reader{i}@example.com" for i in range(60)]


class CountedLookups:
    """The store's suppression list as the processor sees it, with each lookup's size."""

    def __init__(self, source: SuppressionSource) -> None:
        self.source = source
        self.sizes: list[int] = []

    async def suppressed(self, tenant_id: str, emails: Sequence[str]) -> set[str]:
        self.sizes.append(len(emails))
        return await self.source.suppressed(tenant_id, emails)


@pytest.mark.timeout(180)
async def test_a_suppressed_address_is_skipped_and_counted(
        services: WorkerServices, manager: QueueManager, sink: SmtpSink) -> None:
    assert await manager.suppressions.add("t1", ["READER7@example.com", "gone@example.com"]
                                          ) == 2
    assert services.email is not None
    assert services.email.suppressions is not None
    lookups = CountedLookups(services.email.suppressions)
    services.email.suppressions = lookups
    await manager.campaigns.save("t1", "june", subject="S", text="Hi {{ name }}")
    result = await manager.campaigns.send("t1", "june", [{"email": e} for e in READERS],
                                          batch_size=25)
    assert result.recipients == len(READERS)
    done = await _finished(manager, "june")
    # One lookup per batch job (25 + 25 + 10 recipients), not one per chunk of 20.
    assert sorted(lookups.sizes) == [10, 25, 25]
    assert "reader7@example.com" not in sink.handler.counts
    assert sorted(sink.handler.counts) == sorted(e for e in READERS if e != READERS[7])
    assert (done.sent, done.suppressed, done.pending) == (len(READERS) - 1, 1, 0)
    assert done.stats is not None
    assert (done.stats.sent, done.stats.suppressed) == (len(READERS) - 1, 1)
    delivery = await manager.campaigns.recipient("t1", "june", READERS[7])
    assert delivery is not None
    assert (delivery.status, delivery.smtp_code) == ("suppressed", None)

    # Transactional mail carries its own content and is not suppressed.
    await manager.schedule_email_job("welcome-email", {
        "campaignId": "welcome", "tenantId": "t1",
        "recipients": [{"email": "gone@example.com"}],
        "content": {"subject": "Your receipt", "text": "Thanks."}})
    await wait_for_sink_total(sink.handler, len(READERS))
    assert sink.handler.counts["gone@example.com"] == 1

    # Erased: no deliveries left, still never mailed by the next campaign.
    erased = await manager.suppressions.erase("t1", READERS[7])
    assert (erased.deliveries, erased.suppression_created) == (1, False)
    assert await manager.campaigns.recipient_history("t1", READERS[7]) == []
    await manager.campaigns.save("t1", "july", subject="S", text="Hi")
    await manager.campaigns.send("t1", "july", [{"email": READERS[7]},
                                                {"email": READERS[8]}])
    july = await _finished(manager, "july")
    assert (july.sent, july.suppressed) == (1, 1)
    assert "reader7@example.com" not in sink.handler.counts
    entry = await manager.suppressions.get("t1", READERS[7])
    assert entry is not None
    assert entry.email is None  # only the hash is kept


async def test_managing_the_list_from_python(manager: QueueManager, tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "list.csv"
    path.write_text("email,note\nann@example.com,x\nnot-an-address,y\nANN@example.com,z\n"
                    "bob@example.com,w\n", encoding="utf-8")
    imported = await manager.suppressions.import_rows("t1", rows_from_csv(path))
    assert (imported.added, imported.already, imported.duplicates) == (2, 0, 1)
    assert [(r.row, r.field) for r in imported.bad_rows] == [(2, "email")]
    again = await manager.suppressions.import_rows("t1", rows_from_csv(path),
                                                   reason="complaint")
    assert (again.added, again.already) == (0, 2)
    page = await manager.suppressions.list("t1", page_size=1)
    assert (page.total, len(page.items)) == (2, 1)
    assert (await manager.suppressions.list("t1", reason="complaint")).total == 0
    with pytest.raises(JobValidationError, match="emails"):
        await manager.suppressions.add("t1", ["ok@example.com", "nope"])
    assert (await manager.suppressions.list("t1")).total == 2  # nothing listed
    with pytest.raises(JobValidationError, match="reason"):
        await manager.suppressions.add("t1", ["ok@example.com"], reason="bored")  # type: ignore[arg-type]
    assert await manager.suppressions.remove("t1", "Bob@example.com")
    assert await manager.suppressions.get("t1", "bob@example.com") is None
