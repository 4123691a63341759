"""The exception tree of newsletter-queue.

Every error the package raises on purpose derives from ``NewsletterQueueError``, so a
caller can catch the whole family with one clause and still tell the cases apart. The
signals a processor raises to steer the worker are not errors and have a root of their
own, ``JobControl``: a processor's ``except NewsletterQueueError`` around its own calls
never swallows a ``RateLimited`` on its way to the engine. Classes defined outside this
module name their module in brackets::

    NewsletterQueueError
    ├── ConfigurationError            bad settings (URL scheme, prefix, queue table)
    │   └── DkimKeyError              a DKIM private key cannot be used [services.dkim]
    ├── RedisServerError              the Redis server cannot be used as it is
    │   ├── RedisUnavailableError     cannot connect / connection lost (carries the masked URL)
    │   ├── RedisVersionError         server older than the minimum version
    │   ├── EvictionPolicyError       maxmemory-policy is not noeviction and strict mode is on
    │   ├── RedisOutOfMemoryError     Redis refused a write (maxmemory reached, noeviction)
    │   └── EmbeddedServerError       the private dev server could not be started
    ├── DatabaseSchemaError           records tables this release cannot use (a newer revision …)
    │   └── DatabaseUpgradeRequiredError  behind this release and db_auto_upgrade is off
    ├── OverloadedError               too many Redis commands in flight in this process; retry
    ├── QueueNotFoundError            unknown queue name (lists the known ones)
    ├── JobValidationError            job data failed validation (lists every bad field path)
    │   └── RecipientsError           bad recipient rows (row numbers) [campaigns.recipients]
    ├── JobNotFoundError              no job with that id in that queue
    │   └── DeadLetterNotFoundError   no dead letter with that id
    │       └── DeadLetterReplayedError  that dead letter was replayed already
    ├── CampaignNotFoundError         no campaign with that id for that tenant (HTTP 404)
    ├── AdminConflictError            the operation does not fit the state (HTTP 409)
    │   └── CampaignStateError        not in this campaign's state (edit while sending …)
    ├── UnrecoverableError            fail the job now, whatever attempts are left [engine.errors]
    ├── JobLockLostError              the worker no longer owns the job [engine.errors]
    ├── DeliveryError                 a campaign's mail could not be rendered or sent
    │   ├── SmtpError                 the SMTP server did not accept a message [services.smtp]
    │   │   ├── SmtpTransientError    4xx, timeout or lost connection: send later
    │   │   │   ├── SmtpInsecureAuthError  credentials but no TLS: AUTH was not sent
    │   │   │   └── SmtpAuthError     the server refused our credentials: nobody bounces
    │   │   └── SmtpPermanentError    5xx: refused for good, the recipient bounces
    │   ├── RenderError               one recipient's message cannot be rendered [services.render]
    │   ├── ContentError              the campaign content itself is unusable [services.render]
    │   └── TransientSendError        some recipients deferred; the job retries [processors.email]
    ├── InboundPendingError           signed bounce, delivery not yet recorded [processors.inbound]
    ├── AIProviderError               an AI provider call failed [services.ai.base]
    │   ├── ProviderRateLimited       HTTP 429: pause the queue for retry_after_ms
    │   ├── ProviderUnavailable       5xx, timeout, garbled reply: retry
    │   └── ProviderRequestError      other 4xx: the request is wrong, don't retry
    └── ApiError                      an HTTP error answer: status, message, fields [api.errors]

    JobControl                        not an error: steers the worker [engine.errors]
    ├── RateLimited                   pause the queue; the job goes back to wait, no attempt used
    └── DelayedError                  the processor moved its own job to delayed

Errors carry their context as attributes (``url``, ``queue``, ``job_id``, ``errors``) so
that callers — the dev API, the CLI — can render them without parsing messages. A unit
test compares this drawing with the classes, so it cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def brief(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters (with "…"): what error messages quote of an
    id or name someone sent, so a 60 KB id is not echoed back."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class NewsletterQueueError(Exception):
    """Base class of every error raised by newsletter-queue."""


class ConfigurationError(NewsletterQueueError):
    """The settings are invalid or inconsistent."""


class RedisServerError(NewsletterQueueError):
    """A problem with the Redis server or the connection to it.

    Not called ``RedisError``: that is redis-py's root, which our modules catch too.
    """


class RedisUnavailableError(RedisServerError):
    """Redis could not be reached (or the connection was lost).

    Attributes:
        url: the Redis URL with any password replaced by ``***``.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"Redis is unavailable at {url}: {reason}")


class RedisVersionError(RedisServerError):
    """The Redis server is older than the minimum version we support."""

    def __init__(self, url: str, version: str, minimum: str) -> None:
        self.url = url
        self.version = version
        self.minimum = minimum
        super().__init__(
            f"Redis at {url} is version {version}; newsletter-queue needs {minimum} or newer"
        )


class EvictionPolicyError(RedisServerError):
    """``maxmemory-policy`` would let Redis silently evict job keys (strict mode)."""

    def __init__(self, url: str, policy: str) -> None:
        self.url = url
        self.policy = policy
        super().__init__(
            f"Redis at {url} has maxmemory-policy={policy}; jobs could be evicted silently. "
            "Set it to 'noeviction' (CONFIG SET maxmemory-policy noeviction) "
            "or turn strict mode off"
        )


class RedisOutOfMemoryError(RedisServerError):
    """Redis refused a write because ``maxmemory`` is reached: the job was not stored."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(
            f"Redis at {url} is out of memory and refused the write ({detail}); "
            "nothing was enqueued. Raise maxmemory or clean finished jobs."
        )


class EmbeddedServerError(RedisServerError):
    """The private development Redis/Valkey server could not be started."""


class DatabaseSchemaError(NewsletterQueueError):
    """The records database's schema is not one this release can use or upgrade: a
    revision of a newer release, or ``nlq_*`` tables that are not release 0.1.0's."""


class DatabaseUpgradeRequiredError(DatabaseSchemaError):
    """The records database is behind this release and ``db_auto_upgrade`` is off.

    Attributes:
        url: the database URL with any password replaced by ``***``.
        current: where the database stands (``revision 0001``, ``empty`` …).
        head: the revision this release needs.
    """

    def __init__(self, url: str, current: str, head: str) -> None:
        self.url = url
        self.current = current
        self.head = head
        super().__init__(
            f"the records database {url} ({current}) is behind this release's schema "
            f"(revision {head}) and db_auto_upgrade is off (NLQ_DB_AUTO_UPGRADE=false): "
            "run `newsletter-queue db upgrade` with the same settings, then start again")


class OverloadedError(NewsletterQueueError):
    """This process is overloaded: a Redis command waited for a connection too long.

    Not an outage — Redis may be answering well; the process had more commands in
    flight than its pool holds (``redis_max_connections``) for longer than
    ``redis_command_timeout_s``. Retry after ``retry_after_s`` (the API sends it as
    ``Retry-After``).
    """

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"overloaded, retry in {retry_after_s} s: {detail}")


class QueueNotFoundError(NewsletterQueueError, KeyError):
    """A queue name that is not in the queue table."""

    def __init__(self, queue: str, known: Iterable[str]) -> None:
        self.queue = queue
        self.known = tuple(known)
        super().__init__(queue)

    def __str__(self) -> str:
        return f"unknown queue {self.queue!r}; known queues: {', '.join(self.known)}"


@dataclass(frozen=True)
class FieldError:
    """One invalid field: where it is (``recipients[3].email``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class JobValidationError(NewsletterQueueError, ValueError):
    """Job data is invalid. ``errors`` lists every bad field, not just the first."""

    def __init__(self, model: str, errors: Sequence[FieldError]) -> None:
        self.model = model
        self.errors = tuple(errors)
        details = "; ".join(str(e) for e in self.errors)
        super().__init__(f"invalid {model}: {details}")

    @property
    def paths(self) -> list[str]:
        return [e.path for e in self.errors]


class JobNotFoundError(NewsletterQueueError, LookupError):
    """No job with this id exists in the queue."""

    def __init__(self, queue: str, job_id: str) -> None:
        self.queue = queue
        self.job_id = job_id
        super().__init__(f"no job {brief(job_id)!r} in queue {brief(queue)!r}")


class AdminConflictError(NewsletterQueueError):
    """The operation does not fit the current state (HTTP 409): retrying a job that
    has not failed, removing one a worker holds, a replay that lost a race.

    ``details`` holds the JSON fields an interface adds to the message (``state``,
    ``job_id``).
    """

    def __init__(self, message: str, **details: Any) -> None:
        self.details = details
        super().__init__(message)


class CampaignStateError(AdminConflictError):
    """The campaign is not in a state that allows this (HTTP 409): editing one that is
    no longer a draft, pausing one that is not sending, resuming one that is not paused.

    ``state`` is the campaign's state; ``details`` carries it with the ids.
    """

    def __init__(self, tenant_id: str, campaign_id: str, state: str, action: str) -> None:
        self.tenant_id = tenant_id
        self.campaign_id = campaign_id
        self.state = state
        super().__init__(f"cannot {action} campaign {brief(campaign_id)!r} of tenant "
                         f"{brief(tenant_id)!r}: it is {state}", state=state,
                         tenant_id=tenant_id, campaign_id=campaign_id)


class CampaignNotFoundError(NewsletterQueueError, LookupError):
    """No campaign with this id was saved for this tenant (HTTP 404)."""

    def __init__(self, tenant_id: str, campaign_id: str) -> None:
        self.tenant_id = tenant_id
        self.campaign_id = campaign_id
        super().__init__(f"no campaign {brief(campaign_id)!r} for tenant "
                         f"{brief(tenant_id)!r}: save it first")


class DeadLetterNotFoundError(JobNotFoundError):
    """No dead letter with this id."""

    def __init__(self, letter_id: int, message: str | None = None) -> None:
        super().__init__("dead-letters", str(letter_id))
        self.letter_id = letter_id
        self.args = (message or f"no dead letter {letter_id}",)


class DeadLetterReplayedError(DeadLetterNotFoundError):
    """The dead letter was replayed already: there is nothing left to replay."""

    def __init__(self, letter_id: int, replay_job_id: str | None) -> None:
        super().__init__(letter_id, f"dead letter {letter_id} was already replayed as job "
                                    f"{replay_job_id}")
        self.replay_job_id = replay_job_id


class DeliveryError(NewsletterQueueError):
    """Campaign mail could not be rendered or sent (SMTP, templates, content, deferrals).

    The branch the email processor sorts: which subclass decides whether a recipient
    bounces, the job retries or the campaign fails at once.
    """
