"""Chaos scenarios (issue 6): faults injected into real processes on loopback.

Each test runs one scenario of ``tests.chaos.scenarios`` at the ``QUICK`` profile in its
own directory — a private ``redis-server`` (never the shared one), the dev SMTP sink
and worker processes, all killed when the scenario ends — and asserts on the counts.
``python bench/chaos.py`` runs the same scenarios at the issue's sizes and timings.
"""

from __future__ import annotations

import pytest

from newsletter_queue.embedded import find_server_binary
from newsletter_queue.errors import EmbeddedServerError


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault injection with private redis-servers and worker processes "
        "(tests/chaos; deselect with -m 'not chaos')")


@pytest.fixture(autouse=True)
def _server_binary() -> None:
    try:
        find_server_binary()
    except EmbeddedServerError as exc:
        pytest.skip(f"no redis-server or valkey-server binary: {exc}")

