"""newsletter-queue: background jobs for a multi-tenant newsletter platform.

Campaign email over SMTP, analytics aggregation and AI content jobs on Redis, stored in
BullMQ's data model so Node BullMQ producers, workers and dashboards interoperate.

``queue_manager`` is created from the environment on first access::

    from newsletter_queue import queue_manager
    stats = await queue_manager.get_queue_stats("email")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings
from .devtools import DevTools, PerformanceResult, dev_helpers
from .errors import (
    ConfigurationError,
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
from .records import EnqueuedJob, HealthCheck, JobInfo, QueueStats

if TYPE_CHECKING:
    from .devtools import queue_dev_tools
    from .monitor import queue_monitor

    queue_manager: QueueManager

__version__ = "0.1.0"

__all__ = [
    "QUEUE_DEFAULTS",
    "AIJobData",
    "AnalyticsJobData",
    "ConfigurationError",
    "DevTools",
    "EmailContent",
    "EmailJobData",
    "EmbeddedServerError",
    "EnqueuedJob",
    "ErrorRecord",
    "EvictionPolicyError",
    "FieldError",
    "HealthCheck",
    "JobInfo",
    "JobNotFoundError",
    "JobOptions",
    "JobValidationError",
    "MonitorRecorder",
    "MonitorReport",
    "MonitorThresholds",
    "NewsletterQueueError",
    "OverloadedError",
    "PerformanceResult",
    "QueueConfig",
    "QueueHealth",
    "QueueManager",
    "QueueMetrics",
    "QueueMonitor",
    "QueueName",
    "QueueNotFoundError",
    "QueueStats",
    "Recipient",
    "RedisOutOfMemoryError",
    "RedisServerError",
    "RedisUnavailableError",
    "RedisVersionError",
    "Settings",
    "TrackingEvent",
    "__version__",
    "dev_helpers",
    "load_settings",
    "queue_dev_tools",
    "queue_manager",
    "queue_monitor",
]

_lazy: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """Create ``queue_manager`` from the environment the first time it is used."""
    if name == "queue_manager":
        if "queue_manager" not in _lazy:
            _lazy["queue_manager"] = QueueManager(load_settings())
        return _lazy["queue_manager"]
    if name in ("queue_monitor", "queue_dev_tools"):
        module = importlib.import_module(
            ".monitor" if name == "queue_monitor" else ".devtools", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
