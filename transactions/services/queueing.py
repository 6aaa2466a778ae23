"""Handing work to the workers: a user's settlement once a change commits (one queued task per
burst), and the sweepers that re-enqueue what a lost task or a due expiry left behind.

The task module imports the services, so the tasks are imported here inside the functions
that send them.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.db.transaction import on_commit
from django.utils import timezone

from stockflow.queued import clear_queued, mark_queued
from stocks.models import StockData

from ..models import Transaction, TransactionStatus

# The package's one logger: log lines keep `logger=transactions.services`.
logger = logging.getLogger(__package__)

PENDING, OPEN = TransactionStatus.PENDING, TransactionStatus.OPEN


def _enqueue_settlement(user_id: int) -> None:
    from ..tasks import settle_user_transactions_task

    settle_user_transactions_task.delay(user_id)


def _settlement_mark(user_id: int) -> str:
    return f"settle:{user_id}"


def _request_settlement(user_id: int) -> None:
    """Enqueue the user's settlement unless one is queued and has not started yet: that one
    reads this commit too (stockflow/queued.py). One task then settles a burst in one go."""
    if not mark_queued(_settlement_mark(user_id), settings.SETTLE_QUEUED_MARK_SECONDS):
        return
    try:
        _enqueue_settlement(user_id)
    except Exception:
        clear_queued(_settlement_mark(user_id))  # the next submission tries again
        raise


def _settle_on_commit(user_id: int) -> None:
    # robust: a broker outage must not fail a stored change; the sweeper retries.
    on_commit(lambda: _request_settlement(user_id), robust=True)


# --- sweepers ---------------------------------------------------------------------------


def transactions_requeue_stale(*, older_than_seconds: float) -> list[int]:
    """Re-enqueue what a lost task left behind: settlement for users whose orders sat pending
    (or ready to fill) too long, and the order check of tickers with unchecked quotes."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = Transaction.objects.filter(
        Q(status=PENDING, timestamp__lt=cutoff)
        | Q(status=OPEN, ready_price__isnull=False, ready_at__lt=cutoff)
    )
    user_ids = sorted(set(stale.values_list("user_id", flat=True)))
    for user_id in user_ids:
        _enqueue_settlement(user_id)
    if user_ids:
        logger.info("pending_swept users=%s", ",".join(map(str, user_ids)))
    tickers = sorted(
        set(
            StockData.objects.filter(orders_checked_at__isnull=True).values_list(
                "ticker", flat=True
            )
        )
    )
    if tickers:
        from ..tasks import check_orders_task

        for ticker in tickers:
            check_orders_task.delay(ticker)
        logger.info("quotes_swept tickers=%s", ",".join(tickers))
    return user_ids


def orders_expire_due() -> list[int]:
    """Hand the users whose open orders reached their expiry to settlement, which expires them
    and releases their reservations. Returns those users."""
    user_ids = sorted(
        set(
            Transaction.objects.filter(status=OPEN, expires_at__lte=timezone.now()).values_list(
                "user_id", flat=True
            )
        )
    )
    for user_id in user_ids:
        _enqueue_settlement(user_id)
    return user_ids
