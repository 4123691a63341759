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
