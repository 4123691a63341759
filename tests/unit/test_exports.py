"""The public API is exactly ``__all__`` (as httpx checks its exported members)."""

from __future__ import annotations

import newsletter_queue
from newsletter_queue.engine import JobControl


def test_all_is_sorted_and_complete() -> None:
    names = newsletter_queue.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert getattr(newsletter_queue, name) is not None


def test_every_public_attribute_is_exported() -> None:
    public = {name for name in vars(newsletter_queue)
              if not name.startswith("_") and not isinstance(
                  getattr(newsletter_queue, name), type(newsletter_queue))}
    public -= {"annotations", "TYPE_CHECKING", "Any"}
    assert public <= set(newsletter_queue.__all__)


def test_exceptions_share_one_root() -> None:
    # Errors under NewsletterQueueError; the worker's control signals (RateLimited …)
    # under JobControl — never both, so catching our errors never catches a signal.
    for name in newsletter_queue.__all__:
        obj = getattr(newsletter_queue, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            error = issubclass(obj, newsletter_queue.NewsletterQueueError)
            assert error != issubclass(obj, JobControl), name  # exactly one of the two


PRODUCER_HALF = {"QueueManager", "QueueAdmin", "JobOptions", "EmailJobData", "AnalyticsJobData",
                 "AIJobData", "Recipient", "TrackingEvent", "EnqueuedJob", "JobInfo",
                 "QueueStats", "HealthCheck", "Settings", "load_settings", "queue_manager",
                 "Campaigns", "Suppressions", "SuppressionRecord", "ErasureResult"}
WORKER_HALF = {"Worker", "Job", "WorkerOptions", "ProcessorRegistry", "System", "run_workers",
               "UnrecoverableError", "RateLimited", "DelayedError", "JobControl"}
DEV_TOOLS = {"DevTools", "PerformanceResult", "dev_helpers", "queue_dev_tools"}


def test_the_producer_and_the_worker_half_are_exported() -> None:
    assert set(newsletter_queue.__all__) >= PRODUCER_HALF
    assert set(newsletter_queue.__all__) >= WORKER_HALF
    assert newsletter_queue.Worker is newsletter_queue.engine.Worker
    assert newsletter_queue.ProcessorRegistry is newsletter_queue.registry.ProcessorRegistry


def test_dev_tools_live_in_their_own_namespace() -> None:
    import newsletter_queue.dev as dev

    assert not DEV_TOOLS & set(newsletter_queue.__all__)
    for name in DEV_TOOLS:
        assert not hasattr(newsletter_queue, name), name
        assert getattr(dev, name) is not None, name
