"""WorkerOptions: the one declaration of a worker's knobs, and a queue's options from
its QueueConfig (no Redis needed)."""

from __future__ import annotations

import dataclasses

import pytest

from newsletter_queue.engine import Worker, WorkerOptions
from newsletter_queue.engine.metrics import ONE_WEEK_POINTS
from newsletter_queue.engine.options import WorkerKnobs
from newsletter_queue.queues import QUEUE_DEFAULTS, QueueConfig, RateLimit
from tests.conftest import make_settings


def test_the_keyword_view_names_every_option() -> None:
    assert set(WorkerKnobs.__annotations__) == {
        f.name for f in dataclasses.fields(WorkerOptions)}


def test_a_queue_config_becomes_its_workers_options() -> None:
    config = QueueConfig(concurrency=7, rate_limit=RateLimit(max=3, duration_ms=500),
                         lock_duration_ms=4000, stalled_interval_ms=2000,
                         max_stalled_count=2)
    options = WorkerOptions.for_queue(config)
    assert (options.concurrency, options.limiter) == (7, config.rate_limit)
    assert (options.lock_duration_ms, options.stalled_interval_ms,
            options.max_stalled_count) == (4000, 2000, 2)
    assert options.metrics_max_data_points == ONE_WEEK_POINTS  # what the monitor reads
    assert WorkerOptions.for_queue(QUEUE_DEFAULTS["email"]).limiter == RateLimit(
        max=50, duration_ms=1000)


def test_knobs_override_the_queue_and_are_validated() -> None:
    options = WorkerOptions.for_queue(QUEUE_DEFAULTS["ai"], concurrency=9, name="w-1")
    assert (options.concurrency, options.name) == (9, "w-1")
    assert options.limiter == QUEUE_DEFAULTS["ai"].rate_limit
    with pytest.raises(ValueError, match="concurrency must be ≥ 1"):
        WorkerOptions.for_queue(QUEUE_DEFAULTS["ai"], concurrency=0)


def test_a_worker_takes_options_and_knobs_over_them() -> None:
    settings = make_settings()
    base = WorkerOptions.for_queue(settings.queue_config("email"))
    worker = Worker("email", lambda job: None, settings=settings, options=base,
                    concurrency=2)
    assert worker.options == dataclasses.replace(base, concurrency=2)
    assert Worker("email", lambda job: None, settings=settings,
                  drain_delay_ms=50).options == WorkerOptions(drain_delay_ms=50)
    assert Worker.from_options("email", lambda job: None, base,
                               settings=settings).options is base
    with pytest.raises(TypeError):
        Worker("email", lambda job: None, settings=settings, no_such_knob=1)  # type: ignore[call-arg]
