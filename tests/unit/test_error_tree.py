"""The exception tree drawn in ``errors.py`` is the tree of the code.

Every module of the package is imported, the classes under ``NewsletterQueueError`` and
``JobControl`` are collected from ``__subclasses__()``, and the drawing must name each of
them once, under its real parent. A class added, moved or renamed without redrawing the
tree fails here; so does a drawn class that no longer exists.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
import redis.exceptions

import newsletter_queue
from newsletter_queue import errors
from newsletter_queue.engine import errors as engine_errors
from newsletter_queue.engine.errors import DelayedError, JobControl, RateLimited
from newsletter_queue.errors import DeliveryError, NewsletterQueueError
from newsletter_queue.services.ai import base as ai_base

ROOTS = (NewsletterQueueError, JobControl)
# One node of a drawing: the tree's rails, then the class name.
_NODE = re.compile(r"^(?P<rails>(?:[│ ] {3})*(?:[├└]── )?)(?P<name>[A-Z]\w*)\b")

Tree = dict[str, str | None]  # class name → its parent's name (None for a root)


def drawn(doc: str) -> Tree:
    """The parent of every class drawn in ``doc``'s ``::`` blocks."""
    tree: Tree = {}
    lines = doc.splitlines()
    starts = [i + 1 for i, line in enumerate(lines) if line.rstrip().endswith("::")]
    for start in starts:
        stack: list[str] = []
        for line in lines[start:]:
            if line.strip() and not line.startswith("    "):
                break  # the prose after the drawing
            match = _NODE.match(line[4:])
            if match is None:
                continue
            depth = len(match["rails"]) // 4
            name = match["name"]
            assert name not in tree, f"{name} is drawn twice"
            del stack[depth:]
            tree[name] = stack[-1] if stack else None
            stack.append(name)
    return tree


def actual() -> Tree:
    """The parent of every class of the package under one of ``ROOTS``."""
    for module in pkgutil.walk_packages(newsletter_queue.__path__, "newsletter_queue."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    tree: Tree = {root.__name__: None for root in ROOTS}
    todo: list[type] = list(ROOTS)
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("newsletter_queue."):
                parents = [b for b in sub.__bases__ if issubclass(b, ROOTS)]
                assert parents == [cls], f"{sub.__name__} has tree parents {parents}"
                tree[sub.__name__] = cls.__name__
                todo.append(sub)
    return tree


def test_the_drawing_in_errors_py_is_the_class_tree() -> None:
    assert errors.__doc__ is not None
    assert drawn(errors.__doc__) == actual()


@pytest.mark.parametrize("module", [engine_errors, ai_base], ids=lambda m: m.__name__)
def test_partial_drawings_elsewhere_agree_with_the_tree(module: object) -> None:
    doc = getattr(module, "__doc__", None)
    assert doc is not None
    part, whole = drawn(doc), actual()
    assert len(part) >= 4
    for name, parent in part.items():
        # A partial drawing may leave out levels, never put a class under a stranger.
        assert name in whole, name
        if parent is not None:
            assert parent in _ancestors(name, whole), f"{name} drawn under {parent}"


def _ancestors(name: str, tree: Tree) -> list[str]:
    out: list[str] = []
    parent = tree[name]
    while parent is not None:
        out.append(parent)
        parent = tree[parent]
    return out


def test_control_signals_are_not_errors() -> None:
    # A processor's "except NewsletterQueueError" around its own calls must let the
    # signals through to the engine; failing a job for good is a real error.
    def guarded(exc: Exception) -> str:
        try:
            raise exc
        except NewsletterQueueError:
            return "caught as an error"

    assert not issubclass(JobControl, NewsletterQueueError)
    for signal in (RateLimited, DelayedError):
        assert issubclass(signal, JobControl)
        with pytest.raises(signal):
            guarded(signal())
    assert issubclass(newsletter_queue.engine.UnrecoverableError, NewsletterQueueError)
    assert not issubclass(newsletter_queue.engine.UnrecoverableError, JobControl)


def test_delivery_errors_share_a_branch() -> None:
    from newsletter_queue.processors.email import TransientSendError
    from newsletter_queue.services.render import ContentError, RenderError
    from newsletter_queue.services.smtp import (
        SmtpInsecureAuthError,
        SmtpPermanentError,
        SmtpTransientError,
    )

    for cls in (TransientSendError, ContentError, RenderError, SmtpInsecureAuthError,
                SmtpPermanentError, SmtpTransientError):
        assert issubclass(cls, DeliveryError), cls


def test_no_class_of_ours_is_named_like_one_of_redis_py() -> None:
    # Our modules catch redis-py's errors beside ours: a shared name needs an alias at
    # every import, and one missed alias catches the wrong family.
    theirs = {name for name in dir(redis.exceptions) if not name.startswith("_")}
    assert not set(actual()) & theirs
