"""The states a BullMQ job can be in, and where each one lives in Redis.

BullMQ keeps one Redis structure per state: ``wait``, ``active`` and ``paused`` are
lists (LPUSH at the head, so the head is the newest job), the others sorted sets. The
name an operator types (``waiting``) differs from the key suffix (``wait``) for one of
them. Every reader — the admin service, the monitor, ``/metrics``, the dashboard — takes
both from here instead of spelling them again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class JobState(StrEnum):
    """A job state by its wire name (what the API, the CLI and ``getJobState`` say)."""

    WAITING = "waiting"
    PRIORITIZED = "prioritized"
    ACTIVE = "active"
    DELAYED = "delayed"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"
    WAITING_CHILDREN = "waiting-children"

    @property
    def key_suffix(self) -> str:
        """The suffix of the state's key: ``{prefix}:{queue}:{suffix}``."""
        return "wait" if self is JobState.WAITING else self.value

    @property
    def is_list(self) -> bool:
        """Whether the state is a Redis list (else a sorted set)."""
        return self in _LISTS

    @property
    def field(self) -> str:
        """The attribute of ``QueueStats`` counting this state (``waiting_children``)."""
        return self.value.replace("-", "_")


_LISTS = frozenset({JobState.WAITING, JobState.ACTIVE, JobState.PAUSED})

# Every state, in the order dashboards show them.
JOB_STATES: tuple[str, ...] = tuple(s.value for s in JobState)
# The six an overview shows per queue (tables, dashboard cards); paused and
# waiting-children stay in the job lists.
OVERVIEW_STATES: tuple[str, ...] = JOB_STATES[:6]

# What BullMQ's clean script accepts (every state but waiting-children). A Literal so
# that type checkers and FastAPI's query validation know the values.
CleanState = Literal["completed", "failed", "delayed", "waiting", "active", "paused",
                     "prioritized"]
CLEAN_STATES: tuple[str, ...] = get_args(CleanState)
if set(CLEAN_STATES) != set(JOB_STATES) - {JobState.WAITING_CHILDREN}:  # pragma: no cover
    raise AssertionError("CleanState no longer matches JobState")
