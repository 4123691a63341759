"""Every Redis key newsletter-queue writes beside BullMQ's own, named in one place.

BullMQ's keys (``{prefix}:{queue}:wait``, job hashes …) are the engine's and live in
``engine/keys.py``. The application adds its own under the same prefix, so that one
``NLQ_KEY_PREFIX`` (with a cluster hash tag) covers everything and ``clear`` or a test's
cleanup finds it all::

    {prefix}:monitor:errors                     stream of failed attempts (capped)
    {prefix}:monitor:{queue}:durations          list of recent processing times (ms)
    {prefix}:monitor:{queue}:hist               histogram counters for /metrics
    {prefix}:monitor:emails                     hash: sent, bounced, failed
    {prefix}:devmail                            list of mail captured by the dev sink
    {prefix}:circuit:{name}                     circuit breaker (smtp, ai)
    {prefix}:email:rate:global|tenant:{id}      send-rate token buckets
    {prefix}:email:ledger:{tenant}:{campaign}   per-recipient delivery ledger (+ :meta)
    {prefix}:email:campaign:{tenant}:{campaign} campaign progress (+ :done, :batches …)
                                                and state (+ :state, :counts, :rate)
"""

from __future__ import annotations

# The circuit breakers the services open: the SMTP pool's and the AI provider's.
SMTP_BREAKER = "smtp"
AI_BREAKER = "ai"
BREAKERS: tuple[str, ...] = (SMTP_BREAKER, AI_BREAKER)
# The relative key of the dev sink's captured mail (``{prefix}:devmail``).
DEVMAIL = "devmail"


def monitor_key(prefix: str, *parts: str) -> str:
    """``{prefix}:monitor:{parts…}`` — every key the monitor itself writes."""
    return ":".join((prefix, "monitor", *parts))


def monitor_errors_key(prefix: str) -> str:
    return monitor_key(prefix, "errors")


def durations_key(prefix: str, queue: str) -> str:
    return monitor_key(prefix, queue, "durations")


def histogram_key(prefix: str, queue: str) -> str:
    return monitor_key(prefix, queue, "hist")


def emails_counter_key(prefix: str) -> str:
    """The hash counting deliveries by status (``sent``, ``bounced``, ``failed``)."""
    return monitor_key(prefix, "emails")


def devmail_key(prefix: str) -> str:
    return f"{prefix}:{DEVMAIL}"


def breaker_key(prefix: str, name: str) -> str:
    return f"{prefix}:circuit:{name}"


def send_rate_key(prefix: str) -> str:
    """The base of the send-rate buckets (``…:global``, ``…:tenant:{id}``)."""
    return f"{prefix}:email:rate"


def ledger_key(prefix: str, tenant_id: str, campaign_id: str) -> str:
    return f"{prefix}:email:ledger:{tenant_id}:{campaign_id}"


def campaign_key(prefix: str, tenant_id: str, campaign_id: str) -> str:
    return f"{prefix}:email:campaign:{tenant_id}:{campaign_id}"
