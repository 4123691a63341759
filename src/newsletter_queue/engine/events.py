"""Worker event hooks: registered per event, awaited in order, never fatal.

Why not ``bullmq``'s ``EventEmitter``: it calls listeners and drops the coroutine an
async listener returns (it is never awaited), and a raising listener breaks the worker's
loop. Here every hook — sync or async — is awaited where the event happens (a slow
``completed`` hook delays that slot's next job, which is the back-pressure you want),
and an exception in a hook is logged with the queue, event and job id, then ignored.

Events and the arguments hooks receive:

============  ==========================================
``active``     ``(job)``             the job was fetched and is about to run
``progress``   ``(job, value)``      ``job.update_progress(value)`` was stored
``completed``  ``(job, result)``     the job completed
``failed``     ``(job, error)``      an attempt failed; ``job.failed_for_good`` says
                                     whether it was final or a retry is coming
``stalled``    ``(job_id)``          a stalled job was moved back to wait
``drained``    ``()``                the queue has no waiting job
``error``      ``(error)``           an engine error (lost lock, script error …)
============  ==========================================

Whether a failure is final is said on the job, not as a third argument: every ``failed``
hook written for BullMQ takes ``(job, error)`` and would break on a third one, while
``job.failed_for_good`` is set by the one place that decides (``outcomes``) before the
hooks run — BullMQ's own signal for it, ``finishedOn``, is likewise set on the job.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, Literal, TypeAlias, get_args

log = logging.getLogger(__name__)

EventName: TypeAlias = Literal[
    "active", "progress", "completed", "failed", "stalled", "drained", "error"
]
EVENTS: tuple[str, ...] = get_args(EventName)
Hook: TypeAlias = Callable[..., Any]


class Hooks:
    """The hooks of one worker.

    Args:
        queue: used in log lines.
    """

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._hooks: dict[str, list[Hook]] = {}

    def on(self, event: str, hook: Hook) -> Hook:
        """Register ``hook`` for ``event``; returns the hook."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; known events: {', '.join(EVENTS)}")
        if not callable(hook):
            raise TypeError("hook must be callable")
        self._hooks.setdefault(event, []).append(hook)
        return hook

    def off(self, event: str, hook: Hook) -> None:
        """Remove ``hook`` from ``event`` (no error if it was not registered)."""
        hooks = self._hooks.get(event)
        if hooks and hook in hooks:
            hooks.remove(hook)
            if not hooks:
                del self._hooks[event]

    def has(self, event: str) -> bool:
        return event in self._hooks

    async def emit(self, event: str, *args: Any) -> None:
        """Call and await each hook of ``event``; log (never raise) their errors."""
        for hook in tuple(self._hooks.get(event, ())):
            try:
                result = hook(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception(
                    "%s hook %s failed (queue=%s%s); the worker carries on",
                    event, getattr(hook, "__qualname__", repr(hook)), self.queue,
                    _job_context(args))


def _job_context(args: tuple[Any, ...]) -> str:
    if not args:
        return ""
    first = args[0]
    job_id = getattr(first, "id", None)
    if job_id is not None:
        return f", job={job_id}"
    if isinstance(first, str):
        return f", job={first}"
    return ""
