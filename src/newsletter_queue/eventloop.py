"""How the long-running commands (``up``, ``worker``, ``api``) run: their event loop
and where their logs go.

uvloop (libuv, in C) where it is installed — a dependency on Linux and macOS — and
asyncio's own loop otherwise or when ``NLQ_EVENT_LOOP=asyncio`` asks for it. Measured
with ``bench/email.py`` on the development machine, interleaved: the email path sent
4,561 and 4,380 emails/s on uvloop against 3,843 and 3,786 on asyncio's loop (its SMTP
client's ceiling: about 18,000 against 14,000 messages/s); the engine's no-op jobs gain
2–3 % at concurrency 1 and nothing measurable at 10. Everything else (tests, library
use, short CLI commands) runs on whatever loop its caller made.

Their logs go to standard error at ``NLQ_LOG_LEVEL`` (``log_to_stderr``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from .errors import ConfigurationError

T = TypeVar("T")
EventLoopChoice = Literal["auto", "uvloop", "asyncio"]


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop ``choice`` names; ``None`` means asyncio's default.

    Raises:
        ConfigurationError: ``uvloop`` asked for but not installed.
    """
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigurationError(
                "NLQ_EVENT_LOOP=uvloop but uvloop is not installed (it has no Windows "
                "build); install it or use NLQ_EVENT_LOOP=auto") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice = "auto") -> T:
    """Run ``main`` to completion on a new loop of ``choice`` (``asyncio.run`` otherwise)."""
    try:
        factory = loop_factory(choice)
    except ConfigurationError:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the running loop's implementation, for start-up logs."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def log_to_stderr(level: str) -> None:
    """Log to standard error at ``level``, unless the program embedding us configured
    logging already."""
    root = logging.getLogger()
    if root.handlers:
        return
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiosmtpd (the dev sink) logs every SMTP command at INFO, Alembic every step of
    # every migration check: theirs only from WARNING on.
    for chatty in ("mail.log", "alembic"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
