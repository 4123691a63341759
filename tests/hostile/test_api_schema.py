"""Schemathesis against the dev API's own OpenAPI schema, over real HTTP: 0 server errors.

For every operation the schema lists, schemathesis generates requests from the schema
(valid ones, and invalid ones: wrong types, missing and unexpected fields, odd
strings) and sends them to the app served by uvicorn on loopback, against a real Redis
under this test's prefix. That includes the campaign routes and their CSV and NDJSON
uploads. Every answer must be below 500; every error answer must be
this API's JSON error shape — except those of the public routes (``PUBLIC_PATHS``: the
unsubscribe page, the open pixel, the click redirect), which answer people and mail
clients with a page or an image, not API clients.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, settings
from schemathesis.checks import not_a_server_error

from newsletter_queue.api import create_app
from newsletter_queue.config import Settings
from tests.support.liveapi import live_api

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def live_base(settings: Settings) -> Iterator[str]:
    with live_api(settings) as base:
        yield base


# The schema is the app's own (routes do not depend on settings beyond dev mode); the
# requests go to a live server built from the test's settings.
schema = schemathesis.openapi.from_dict(create_app(Settings(  # type: ignore[call-arg]
    _env_file=None, dev_mode=True, state_dir=Path(tempfile.mkdtemp(prefix="nlq-schema-")))
).openapi())
# A bad link on the public routes is answered for people and mail clients: a page, or
# the pixel itself; every other route answers in JSON.
PUBLIC_ANSWERS = {"/unsubscribe": "text/html", "/t/c": "text/html", "/t/o": "image/gif"}


# A campaign send also takes an NDJSON upload (a string in the schema): sent as text, so
# schemathesis covers that media type too (text/csv it serialises itself).
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
# The raw message of POST /api/inbound, likewise.
schemathesis.serializer.alias("message/rfc822", "text/plain")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_or_breaks_gets_a_5xx(case: schemathesis.Case,
                                                           live_base: str) -> None:
    # ``performance`` enqueues up to 10,000 jobs and waits 30 s for them to drain (no
    # worker runs here): correct, but too slow to repeat 40 times.
    assume((case.query or {}).get("action") != "performance")
    response = case.call_and_validate(base_url=live_base, checks=[not_a_server_error])
    if response.status_code == 400 and case.path in PUBLIC_ANSWERS:  # a bad link
        assert response.headers["content-type"][0].startswith(PUBLIC_ANSWERS[case.path]), (
            response.status_code, case.query)
    elif response.status_code >= 400 and case.method.upper() != "HEAD":  # HEAD: no body
        assert response.headers["content-type"][0].startswith("application/json")
        assert "error" in response.json()
