"""An order after submission: cancel, replace in place, and expiry (at its cut-off, or at once
for an ioc order that cannot fill), each under the user's lock, then the order's."""

import logging
from datetime import datetime

from django.db.transaction import atomic
from django.utils import timezone

from stocks.selectors import latest_close
from users.models import User

from ..errors import NotOpen, NotPending
from ..models import FailureReason, OrderType, TimeInForce, Transaction, TransactionStatus
from .conditions import (
    _arm,
    _past_cutoff,
    _price_open_order,
    _react,
    _refuse_a_trail_as_wide_as_the_price,
    next_market_close,
)
from .events import _record
from .reservations import _release, _reserve

# The package's one logger: log lines keep `logger=transactions.services`.
logger = logging.getLogger(__package__)

PENDING, OPEN = TransactionStatus.PENDING, TransactionStatus.OPEN


def _lock_order(transaction: Transaction) -> Transaction:
    """Lock the order's user, then the order itself: settlement's lock order."""
    User.objects.select_for_update(no_key=True).get(pk=transaction.user_id)
    return Transaction.objects.select_for_update(no_key=True).get(pk=transaction.pk)


def _mark_expired(order: Transaction, *, now: datetime) -> None:
    order.status = TransactionStatus.EXPIRED
    order.failure_reason = FailureReason.EXPIRED
    order.settled_at = now


def _expire_ioc_that_cannot_fill(order: Transaction, *, now: datetime) -> bool:
    """An ioc order whose condition does not hold now ends at once and reserves nothing: mark
    it expired and say so (submit stores it so; replace gives back what it held)."""
    if order.time_in_force != TimeInForce.IOC or order.ready_price is not None:
        return False
    _mark_expired(order, now=now)
    return True


def transaction_cancel(*, transaction: Transaction) -> Transaction:
    """Cancel a pending or open order and release its reservation, or refuse (NotPending)
    when a settlement, an expiry or another cancel got there first."""
    with atomic():
        txn = _lock_order(transaction)
        if txn.status not in (PENDING, OPEN):
            raise NotPending(transaction_id=txn.pk, status=txn.status)
        if txn.status == OPEN:
            _release(txn)
        txn.status = TransactionStatus.CANCELLED
        txn.settled_at = timezone.now()
        txn.save(update_fields=["status", "settled_at"])
        _record([(["cancelled"], txn)])
    logger.info("transaction_cancelled transaction_id=%s user_id=%s", txn.pk, txn.user_id)
    return txn


def transaction_replace(*, transaction: Transaction, changes: dict) -> Transaction:
    """Change an open order's volume, prices or time in force in place: it keeps its id and
    its place in the user's order, and its reservation is re-checked and adjusted at once.

    An order past its cut-off is expired here, as settlement would expire it, and the replace
    is refused (NotOpen, status expired): it can neither become gtc nor fill after its day.
    """
    with atomic():
        txn = _lock_order(transaction)
        now = timezone.now()
        if txn.status == OPEN and _past_cutoff(txn, now):
            _expire_open(txn, now=now)
        elif txn.status != OPEN:
            raise NotOpen(transaction_id=txn.pk, status=txn.status)
        else:
            _replace_open(txn, changes=changes, now=now)
            return txn
    # Refused once the expiry has committed: raising inside the block would roll it back.
    raise NotOpen(transaction_id=txn.pk, status=txn.status)


def _replace_open(txn: Transaction, *, changes: dict, now: datetime) -> None:
    """transaction_replace on the locked open order, before its cut-off."""
    held = txn.transaction_price if txn.is_buy else txn.transaction_volume
    for name, value in changes.items():
        setattr(txn, name, value)
    if "time_in_force" in changes:
        txn.expires_at = next_market_close(now) if txn.time_in_force == "day" else None
    close = latest_close(ticker=txn.ticker)
    txn.ready_price = txn.ready_at = None
    if txn.order_type == OrderType.STOP_LIMIT and "stop_price" in changes:
        txn.triggered_at = None  # a new stop must be reached again
    _arm(txn)
    _refuse_a_trail_as_wide_as_the_price(txn, close=txn.trail_anchor)
    _price_open_order(txn)
    events = ["replaced", *(_react(txn, close, now) if close is not None else [])]
    txn.replaced_at = now
    if _expire_ioc_that_cannot_fill(txn, now=now):
        _release(txn, held=held)
        events.append("expired")
    else:
        _reserve(txn, releasing=held)
    txn.save()
    _record([(events, txn)])


def _expire_open(txn: Transaction, *, now: datetime) -> None:
    """Expire the locked open order and release its reservation, as settlement does."""
    _release(txn)
    _mark_expired(txn, now=now)
    txn.save(update_fields=["status", "failure_reason", "settled_at"])
    _record([(["expired"], txn)])
    logger.info("transaction_expired transaction_id=%s user_id=%s", txn.pk, txn.user_id)
