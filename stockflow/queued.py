"""Queued marks: a burst of requests for the same work enqueues its task once.

A request that wants, say, a user's settlement sets the mark `settle:<user id>` with SET NX
after its own write committed, and enqueues the task only if the mark was not there. The
task clears the mark *before* it reads what to do, so whatever committed before a mark was
found set is read by the task that will clear it. The mark expires after `seconds`, so a
task lost with the broker stops suppressing new ones; the sweepers enqueue without marks.
A dead cache means "enqueue": duplicates are harmless (tasks are idempotent), a missed
task is not.
"""

from django.core.cache import cache


def _key(name: str) -> str:
    return f"queued:{name}"


def mark_queued(name: str, seconds: int) -> bool:
    """Set the mark; True when the caller must enqueue (no mark yet, or no cache)."""
    # django-redis answers None instead of False when Redis fails (IGNORE_EXCEPTIONS).
    return cache.add(_key(name), 1, seconds) is not False


def clear_queued(*names: str) -> None:
    """Clear the marks, in one cache call (a frozen Redis costs one socket timeout, not n)."""
    cache.delete_many([_key(name) for name in names])
