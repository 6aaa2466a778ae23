"""What the sweepers find: users whose settlement a lost task left undone, tickers whose
quotes no order check read, and users whose open orders reached their expiry. The tasks
enqueue the work (transactions.tasks); nothing here sends a task."""

import logging
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from stocks.models import StockData

from ..models import Transaction, TransactionStatus

# The package's one logger: log lines keep `logger=transactions.services`.
logger = logging.getLogger(__package__)

PENDING, OPEN = TransactionStatus.PENDING, TransactionStatus.OPEN


def transactions_stale(*, older_than_seconds: float) -> tuple[list[int], list[str]]:
    """What a lost task left behind: the users whose orders sat pending (or ready to fill)
    longer than `older_than_seconds`, and the tickers with quotes no order check read."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale = Transaction.objects.filter(
        Q(status=PENDING, timestamp__lt=cutoff)
        | Q(status=OPEN, ready_price__isnull=False, ready_at__lt=cutoff)
    )
    user_ids = sorted(set(stale.values_list("user_id", flat=True)))
    unchecked = StockData.objects.filter(orders_checked_at__isnull=True)
    tickers = sorted(set(unchecked.values_list("ticker", flat=True)))
    if user_ids:
        logger.info("pending_swept users=%s", ",".join(map(str, user_ids)))
    if tickers:
        logger.info("quotes_swept tickers=%s", ",".join(tickers))
    return user_ids, tickers


def orders_due_to_expire() -> list[int]:
    """The users with open orders at or past their expiry, for settlement to expire them and
    release their reservations."""
    due = Transaction.objects.filter(status=OPEN, expires_at__lte=timezone.now())
    return sorted(set(due.values_list("user_id", flat=True)))
