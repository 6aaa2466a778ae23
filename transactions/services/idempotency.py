"""Idempotency keys: the row a key created within IDEMPOTENCY_WINDOW, and creating a row at
most once per key however many retries race."""

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from django.db import IntegrityError
from django.utils import timezone

from ..errors import InsufficientBuyingPower, InsufficientShares

IDEMPOTENCY_WINDOW = timedelta(hours=24)
Row = TypeVar("Row")  # a model instance with an idempotency_key


def _row_for_key(rows, *, idempotency_key: str, created: str):
    """The row of `rows` (one user's) this key created within the window, by its `created`
    time; an older one releases the key."""
    row = rows.filter(idempotency_key=idempotency_key).first()
    if row is not None and getattr(row, created) < timezone.now() - IDEMPOTENCY_WINDOW:
        rows.filter(pk=row.pk, idempotency_key=idempotency_key).update(idempotency_key=None)
        return None
    return row


def _create_once(create: Callable[[], Row], find: Callable[[], Row | None]) -> tuple[Row, bool]:
    """`find()` the row a key already created, else `create()` it; return it and whether it is
    new.

    Concurrent retries are decided by the unique (user, idempotency_key) constraint: the
    losers' inserts wait for the winner's commit, fail, and return the winner's row.
    """
    existing = find()
    if existing is not None:
        return existing, False
    try:
        return create(), True
    except (IntegrityError, InsufficientBuyingPower, InsufficientShares):
        # A concurrent retry won: its insert (unique key) or its reservation, which this
        # one waited for and then found no room beside, was the same request's.
        existing = find()
        if existing is None:
            raise
        return existing, False
