"""Top-level processors for the process-pool tests (picklable, importable by spawn)."""

from __future__ import annotations

import os
from typing import Any

from newsletter_queue.engine import UnrecoverableError


def sum_of_squares(job: dict[str, Any]) -> dict[str, Any]:
    n = int(job["data"]["n"])
    return {"sum": sum(i * i for i in range(n)), "pid": os.getpid(), "attempt": job["attempt"],
            "name": job["name"]}


def refuse(job: dict[str, Any]) -> None:
    raise UnrecoverableError(f"cannot process {job['id']}")


def spin(job: dict[str, Any]) -> int:
    """Busy CPU for ``seconds`` (forever if absent), after writing our pid to ``pidfile``."""
    import time
    from pathlib import Path

    Path(job["data"]["pidfile"]).write_text(str(os.getpid()))
    seconds = job["data"].get("seconds")
    deadline = time.monotonic() + (float(seconds) if seconds is not None else 1e9)
    loops = 0
    while time.monotonic() < deadline:
        loops += 1
    return loops
