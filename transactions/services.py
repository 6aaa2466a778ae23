"""Every rule about money: submitting, cancelling and settling transactions.

Submission prices an order from the ticker's latest close and stores it `pending`;
the settlement task is enqueued only after that row commits. Settlement locks the
user's row, then the positions it touches in ticker order, and settles the user's
pending transactions in submission (id) order. Only `pending` rows are touched, so
running it twice, or concurrently from two workers, changes nothing the second time.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import IntegrityError
from django.db.transaction import atomic, on_commit
from django.utils import timezone

from stockflow.cache import invalidate_on_commit, user_namespace
from stockflow.money import ZERO, quantize_cash, quantize_price
from stocks.errors import UnknownTicker
from stocks.selectors import latest_close
from users.models import User

from .errors import NotPending
from .models import FailureReason, Position, Transaction, TransactionStatus, TransactionType

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)


def _enqueue_settlement(user_id: int) -> None:
    from .tasks import settle_user_transactions_task

    settle_user_transactions_task.delay(user_id)


def transaction_submit(
    *,
    user: User,
    ticker: str,
    transaction_type: str,
    transaction_volume: int,
    idempotency_key: str | None = None,
) -> Transaction:
    """Store a market order priced at the latest close; settlement happens asynchronously."""
    unit_price = latest_close(ticker=ticker)
    if unit_price is None:
        raise UnknownTicker(ticker=ticker)
    with atomic():
        txn = Transaction.objects.create(
            user=user,
            ticker=ticker,
            transaction_type=transaction_type,
            transaction_volume=transaction_volume,
            unit_price=unit_price,
            transaction_price=quantize_cash(unit_price * transaction_volume),
            idempotency_key=idempotency_key,
        )
        # robust: a broker outage must not fail a stored submission; the sweeper retries.
        on_commit(lambda: _enqueue_settlement(user.pk), robust=True)
    logger.info(
        "transaction_submitted transaction_id=%s user_id=%s type=%s ticker=%s volume=%s price=%s",
        txn.pk,
        user.pk,
        transaction_type,
        ticker,
        transaction_volume,
        txn.transaction_price,
    )
    return txn


def _transaction_for_key(*, user: User, idempotency_key: str) -> Transaction | None:
    """The transaction this key created within the window; an older one releases the key."""
    txn = Transaction.objects.filter(user=user, idempotency_key=idempotency_key).first()
    if txn is not None and txn.timestamp < timezone.now() - IDEMPOTENCY_WINDOW:
        Transaction.objects.filter(pk=txn.pk, idempotency_key=idempotency_key).update(
            idempotency_key=None
        )
        return None
    return txn


def transaction_submit_once(
    *, user: User, idempotency_key: str, **order
) -> tuple[Transaction, bool]:
    """Submit unless this key already created a transaction; return it and whether it is new.

    Concurrent retries are decided by the unique (user, idempotency_key) constraint: the
    losers' inserts wait for the winner's commit, fail, and return the winner's row.
    """
    existing = _transaction_for_key(user=user, idempotency_key=idempotency_key)
    if existing is not None:
        return existing, False
    try:
        return transaction_submit(user=user, idempotency_key=idempotency_key, **order), True
    except IntegrityError:
        existing = _transaction_for_key(user=user, idempotency_key=idempotency_key)
        if existing is None:
            raise
        return existing, False


def transaction_cancel(*, transaction: Transaction) -> Transaction:
    """Cancel a pending transaction; the conditional update proves nobody settled it first."""
    cancelled = Transaction.objects.filter(
        pk=transaction.pk, status=TransactionStatus.PENDING
    ).update(status=TransactionStatus.CANCELLED, settled_at=timezone.now())
    transaction.refresh_from_db()
    if not cancelled:
        raise NotPending(transaction_id=transaction.pk, status=transaction.status)
    logger.info(
        "transaction_cancelled transaction_id=%s user_id=%s", transaction.pk, transaction.user_id
    )
    return transaction


@dataclass
class _Book:
    """The locked state of one user while their pending transactions settle."""

    balance: Decimal
    positions: dict[str, Position]
    changed: set[str] = field(default_factory=set)

    def position_to_change(self, user_id: int, ticker: str) -> Position:
        """The position a successful transaction changes (created if the user has none)."""
        if ticker not in self.positions:
            self.positions[ticker] = Position(
                user_id=user_id, ticker=ticker, quantity=0, average_cost=ZERO
            )
        self.changed.add(ticker)
        return self.positions[ticker]


def _apply(book: _Book, txn: Transaction) -> str | None:
    """Apply one transaction to the book; return a failure reason, or None on success."""
    # A failed transaction changes nothing: not even an empty position row is created.
    if txn.transaction_type == TransactionType.BUY:
        if book.balance < txn.transaction_price:
            return FailureReason.INSUFFICIENT_FUNDS
        position = book.position_to_change(txn.user_id, txn.ticker)
        book.balance -= txn.transaction_price
        cost = position.quantity * position.average_cost + txn.transaction_price
        position.quantity += txn.transaction_volume
        position.average_cost = quantize_price(cost / position.quantity)
        return None
    held = book.positions.get(txn.ticker)
    if held is None or held.quantity < txn.transaction_volume:
        return FailureReason.INSUFFICIENT_SHARES
    position = book.position_to_change(txn.user_id, txn.ticker)
    position.quantity -= txn.transaction_volume
    if position.quantity == 0:
        position.average_cost = ZERO
    book.balance += txn.transaction_price
    return None


def transactions_settle_for_user(*, user_id: int) -> list[Transaction]:
    """Settle the user's pending transactions in submission order; return those settled."""
    with atomic():
        # NO KEY UPDATE: still excludes other settlements, but does not block the
        # FK KEY SHARE lock that inserting a new transaction takes on the user row.
        user = User.objects.select_for_update(no_key=True).filter(pk=user_id).first()
        if user is None:
            return []
        pending = list(
            Transaction.objects.select_for_update(no_key=True)
            .filter(user_id=user_id, status=TransactionStatus.PENDING)
            .order_by("id")
        )
        if not pending:
            return []
        tickers = sorted({txn.ticker for txn in pending})
        locked_positions = (
            Position.objects.select_for_update(no_key=True)
            .filter(user_id=user_id, ticker__in=tickers)
            .order_by("ticker")
        )
        book = _Book(balance=user.balance, positions={p.ticker: p for p in locked_positions})

        now = timezone.now()
        for txn in pending:
            reason = _apply(book, txn)
            txn.status = TransactionStatus.FAILED if reason else TransactionStatus.COMPLETED
            txn.failure_reason = reason
            txn.settled_at = now

        User.objects.filter(pk=user_id).update(balance=book.balance)
        for ticker in sorted(book.changed):
            book.positions[ticker].save()
        Transaction.objects.bulk_update(pending, ["status", "failure_reason", "settled_at"])
        invalidate_on_commit(user_namespace(user.username))

    for txn in pending:
        logger.info(
            "transaction_settled transaction_id=%s user_id=%s type=%s ticker=%s volume=%s "
            "price=%s outcome=%s reason=%s",
            txn.pk,
            user_id,
            txn.transaction_type,
            txn.ticker,
            txn.transaction_volume,
            txn.transaction_price,
            txn.status,
            txn.failure_reason or "-",
        )
    return pending


def transactions_requeue_stale(*, older_than_seconds: float) -> list[int]:
    """Re-enqueue settlement for users whose transactions sat pending too long."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    user_ids = list(
        Transaction.objects.filter(status=TransactionStatus.PENDING, timestamp__lt=cutoff)
        .values_list("user_id", flat=True)
        .distinct()
        .order_by("user_id")
    )
    for user_id in user_ids:
        _enqueue_settlement(user_id)
    if user_ids:
        logger.info("pending_swept users=%s", ",".join(map(str, user_ids)))
    return user_ids
