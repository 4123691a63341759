"""Our BullMQ-compatible worker engine, on the Lua scripts of the pinned ``bullmq``.

``bullmq.Worker`` (3.4.4) is slow and imprecise here (see ``worker.py``); producers and
admin tools keep using the ``bullmq`` package, and jobs stay interoperable with Node
BullMQ because the same scripts move them between states.

Modules: ``worker`` (lifecycle and slot loop), ``fetcher`` (marker wait, delays, rate
limits), ``commands``/``scripts``/``keys`` (script calls), ``job`` (processor context),
``executors`` (async/thread/process processors), ``backoff``, ``events`` (hooks),
``health`` (outage backoff), ``scheduler`` (job schedulers), ``metrics``.
"""

from __future__ import annotations

from .errors import DelayedError, JobControl, JobLockLostError, RateLimited, UnrecoverableError
from .executors import Processor, ProcessorRouter
from .job import Job
from .metrics import Metrics, get_metrics
from .options import WorkerOptions
from .worker import Worker

__all__ = [
    "DelayedError",
    "Job",
    "JobControl",
    "JobLockLostError",
    "Metrics",
    "Processor",
    "ProcessorRouter",
    "RateLimited",
    "UnrecoverableError",
    "Worker",
    "WorkerOptions",
    "get_metrics",
]
