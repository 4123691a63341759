"""newsletter-queue: background jobs for a multi-tenant newsletter platform.

Campaign email over SMTP, analytics aggregation and AI content jobs on Redis, stored in
BullMQ's data model so Node BullMQ producers, workers and dashboards interoperate.

The public API has two halves and a monitor:

- **producing and administering** — ``QueueManager`` (and the lazily created
  ``queue_manager``), ``QueueAdmin``, ``Campaigns`` (``manager.campaigns``: save,
  send, status, pause, resume, cancel) and ``Suppressions`` (``manager.suppressions``)
  and what they return, the job models,
  ``JobOptions``, the snapshots they return, ``Settings``;
- **processing** — ``Worker``, ``Job``, ``WorkerOptions``, ``ProcessorRegistry``,
  ``System``/``run_workers``, and the signals a processor raises (``RateLimited``,
  ``DelayedError``, ``UnrecoverableError``);
- **watching** — ``QueueMonitor`` (``queue_monitor``) and its report types.

Every error derives from ``NewsletterQueueError``. Dev tools live in their own namespace,
``newsletter_queue.dev``.

``queue_manager`` is created from the environment on first access::

    from newsletter_queue import queue_manager
    stats = await queue_manager.get_queue_stats("email")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .admin import QueueAdmin
from .campaigns import (
    CampaignPage,
    Campaigns,
    CampaignState,
    CampaignStatus,
    CampaignSummary,
    RecipientsError,
    RowError,
    SendResult,
)
from .config import Settings, load_settings
from .engine import (
    DelayedError,
    Job,
    JobControl,
    JobLockLostError,
    RateLimited,
    UnrecoverableError,
    Worker,
    WorkerOptions,
)
from .errors import (
    AdminConflictError,
    CampaignNotFoundError,
    CampaignStateError,
    ConfigurationError,
    DeadLetterNotFoundError,
    DeadLetterReplayedError,
    DeliveryError,
    EmbeddedServerError,
    EvictionPolicyError,
    FieldError,
    JobNotFoundError,
    JobValidationError,
    NewsletterQueueError,
    OverloadedError,
    QueueNotFoundError,
    RedisOutOfMemoryError,
    RedisServerError,
    RedisUnavailableError,
    RedisVersionError,
)
from .jobs import (
    AIJobData,
    AnalyticsJobData,
    EmailContent,
    EmailJobData,
    Recipient,
    TrackingEvent,
)
from .manager import JobOptions, QueueManager
from .monitor import (
    ErrorRecord,
    MonitorRecorder,
    MonitorReport,
    MonitorThresholds,
    QueueHealth,
    QueueMetrics,
    QueueMonitor,
)
from .queues import QUEUE_DEFAULTS, QueueConfig, QueueName
from .registry import ProcessorRegistry
from .services.render import ContentError
from .services.store import ErasureResult, SuppressionRecord
from .snapshots import EnqueuedJob, HealthCheck, JobInfo, QueueStats
from .suppressions import ImportResult, SuppressionPage, Suppressions
from .system import System, run_workers

if TYPE_CHECKING:
    from .monitor import queue_monitor

    queue_manager: QueueManager

__version__ = "0.1.0"

__all__ = [
    "QUEUE_DEFAULTS",
    "AIJobData",
    "AdminConflictError",
    "AnalyticsJobData",
    "CampaignNotFoundError",
    "CampaignPage",
    "CampaignState",
    "CampaignStateError",
    "CampaignStatus",
    "CampaignSummary",
    "Campaigns",
    "ConfigurationError",
    "ContentError",
    "DeadLetterNotFoundError",
    "DeadLetterReplayedError",
    "DelayedError",
    "DeliveryError",
    "EmailContent",
    "EmailJobData",
    "EmbeddedServerError",
    "EnqueuedJob",
    "ErasureResult",
    "ErrorRecord",
    "EvictionPolicyError",
    "FieldError",
    "HealthCheck",
    "ImportResult",
    "Job",
    "JobControl",
    "JobInfo",
    "JobLockLostError",
    "JobNotFoundError",
    "JobOptions",
    "JobValidationError",
    "MonitorRecorder",
    "MonitorReport",
    "MonitorThresholds",
    "NewsletterQueueError",
    "OverloadedError",
    "ProcessorRegistry",
    "QueueAdmin",
    "QueueConfig",
    "QueueHealth",
    "QueueManager",
    "QueueMetrics",
    "QueueMonitor",
    "QueueName",
    "QueueNotFoundError",
    "QueueStats",
    "RateLimited",
    "Recipient",
    "RecipientsError",
    "RedisOutOfMemoryError",
    "RedisServerError",
    "RedisUnavailableError",
    "RedisVersionError",
    "RowError",
    "SendResult",
    "Settings",
    "SuppressionPage",
    "SuppressionRecord",
    "Suppressions",
    "System",
    "TrackingEvent",
    "UnrecoverableError",
    "Worker",
    "WorkerOptions",
    "__version__",
    "load_settings",
    "queue_manager",
    "queue_monitor",
    "run_workers",
]

_lazy: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """Create ``queue_manager`` from the environment the first time it is used."""
    if name == "queue_manager":
        if "queue_manager" not in _lazy:
            _lazy["queue_manager"] = QueueManager(load_settings())
        return _lazy["queue_manager"]
    if name == "queue_monitor":
        return importlib.import_module(".monitor", __name__).queue_monitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
