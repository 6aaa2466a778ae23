"""Submitting an order, at most once per idempotency key.

A market order is priced at submission from the ticker's latest close and stored `pending`;
any other order is stored `open` with a reservation: cash on the user for a buy
(`reserved`), shares on the position for a sell. Either records `submitted`; its subscribers
(transactions.subscribers) hand what can fill to settlement once the row commits.
"""

import logging
from decimal import Decimal

from django.db.transaction import atomic
from django.utils import timezone

from stocks.errors import UnknownTicker
from stocks.selectors import latest_close
from users.models import User

from ..models import OrderType, TimeInForce, Transaction, TransactionStatus
from .conditions import (
    _arm,
    _cash_for,
    _price_open_order,
    _react,
    _refuse_a_trail_as_wide_as_the_price,
    next_market_close,
)
from .events import _record
from .idempotency import _create_once, _row_for_key
from .lifecycle import _expire_ioc_that_cannot_fill
from .reservations import _reserve

# The package's one logger: log lines keep `logger=transactions.services`.
logger = logging.getLogger(__package__)

OPEN = TransactionStatus.OPEN


def transaction_submit(
    *,
    user: User,
    ticker: str,
    transaction_type: str,
    transaction_volume: int,
    idempotency_key: str | None = None,
    order_type: str = OrderType.MARKET,
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
    trail_price: Decimal | None = None,
    trail_percent: Decimal | None = None,
    time_in_force: str | None = None,
) -> Transaction:
    """Store an order. A market order is priced at the latest close and settles
    asynchronously; any other order reserves what it needs, or is refused."""
    close = latest_close(ticker=ticker)
    if close is None:
        raise UnknownTicker(ticker=ticker)
    order = Transaction(
        user=user,
        ticker=ticker,
        transaction_type=transaction_type,
        transaction_volume=transaction_volume,
        idempotency_key=idempotency_key,
        order_type=order_type,
    )
    if order_type == OrderType.MARKET:
        order.unit_price = close
        order.transaction_price = _cash_for(order, close * transaction_volume)
        with atomic():
            order.save()
            _record([(["submitted"], order)], account=user)
    else:
        _submit_conditional(
            order,
            close=close,
            limit_price=limit_price,
            stop_price=stop_price,
            trail_price=trail_price,
            trail_percent=trail_percent,
            time_in_force=time_in_force or TimeInForce.DAY,
        )
    logger.info(
        "transaction_submitted transaction_id=%s user_id=%s type=%s order_type=%s ticker=%s "
        "volume=%s price=%s status=%s",
        order.pk,
        user.pk,
        transaction_type,
        order.order_type,
        ticker,
        transaction_volume,
        order.transaction_price,
        order.status,
    )
    return order


def _submit_conditional(order: Transaction, *, close: Decimal, time_in_force: str, **prices):
    now = timezone.now()
    for name, value in prices.items():
        setattr(order, name, value)
    order.time_in_force = time_in_force
    order.status = OPEN
    order.timestamp = now
    if order.order_type == OrderType.TRAILING_STOP:
        order.trail_anchor = close
    _arm(order)
    _refuse_a_trail_as_wide_as_the_price(order, close=close)
    _price_open_order(order)  # a trailing stop reserves from where it starts
    events = _react(order, close, now)
    if time_in_force == TimeInForce.DAY:
        order.expires_at = next_market_close(now)
    with atomic():
        if _expire_ioc_that_cannot_fill(order, now=now):
            order.save()
            _record([(["submitted", "expired"], order)])
            return
        _reserve(order)
        order.save()
        _record([(["submitted", *events], order)])


def _transaction_for_key(*, user: User, idempotency_key: str) -> Transaction | None:
    return _row_for_key(
        Transaction.objects.filter(user=user), idempotency_key=idempotency_key, created="timestamp"
    )


def transaction_submit_once(
    *, user: User, idempotency_key: str, **order
) -> tuple[Transaction, bool]:
    """Submit unless this key already created a transaction; return it and whether it is new."""
    return _create_once(
        lambda: transaction_submit(user=user, idempotency_key=idempotency_key, **order),
        lambda: _transaction_for_key(user=user, idempotency_key=idempotency_key),
    )
