"""Scenario 9: 1,000 concurrent POSTs to the dev API, 10 % repeating a job id."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.api_scenarios import api_load, job_ids
from tests.chaos.harness import report

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


def test_the_load_repeats_one_id_in_ten() -> None:
    ids = job_ids(1000, 0.1)
    assert (len(ids), len(set(ids))) == (1000, 900)
    # repeats are spread through the list, not bunched at its end
    first_repeat = next(i for i, job_id in enumerate(ids) if ids.index(job_id) != i)
    assert first_repeat < 500


async def test_thousand_concurrent_posts_create_exactly_the_unique_ids(tmp_path: Path) -> None:
    r = await api_load(tmp_path, requests=1000, repeat_fraction=0.1)
    report(r)
    assert r.extra["errors"] == 0, r.extra["statuses"]
    assert r.extra["statuses"] == {"201": 900, "200": 100}
    # jobs created = unique ids: one job per id, none lost, none doubled
    assert r.extra["jobs_created"] == r.extra["unique_ids"] == 900
    assert r.extra["jobs_waiting"] == 900
    assert r.lost == 0
    assert r.extra["api_log_tracebacks"] == 0
    assert 0 < r.extra["p50_ms"] <= r.extra["p99_ms"]
