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
