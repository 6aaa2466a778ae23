"""Settlement: one user's ready orders, in submission order, in one locked transaction.

Settlement locks the user's row, then the transactions it settles, then the positions they
touch in ticker order (the one lock order every service here follows), and settles in
submission (id) order the user's `pending` orders, the `open` orders a quote made ready
to fill, and the `open` orders past their expiry. Only such rows are touched and each
leaves that state, so running it twice, or concurrently from two workers, changes nothing
the second time. No order spends reserved cash or sells reserved shares but its own.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Q
from django.db.transaction import atomic
from django.utils import timezone

from events.services import events_record
from stockflow.money import ZERO, cash_to_pay, price_to_pay
from stockflow.queued import clear_queued
from users.models import User

from ..models import FailureReason, Position, Transaction, TransactionStatus
from .conditions import _cash_for, _holds, _past_cutoff
from .events import order_event_data

# The package's one logger: log lines keep `logger=transactions.services`.
logger = logging.getLogger(__package__)

PENDING, OPEN = TransactionStatus.PENDING, TransactionStatus.OPEN
MARKET_SETTLED_FIELDS = ("status", "failure_reason", "settled_at", "filled_price")
SETTLED_FIELDS = (
    "status",
    "failure_reason",
    "settled_at",
    "unit_price",
    "transaction_price",
    "filled_price",
)


@dataclass
class _Book:
    """The locked state of one user while their orders settle."""

    balance: Decimal
    reserved: Decimal
    positions: dict[str, Position]
    changed: set[str] = field(default_factory=set)

    @property
    def buying_power(self) -> Decimal:
        return self.balance - self.reserved

    def position_to_change(self, user_id: int, ticker: str) -> Position:
        """The position a successful transaction changes (created if the user has none)."""
        if ticker not in self.positions:
            self.positions[ticker] = Position(
                user_id=user_id, ticker=ticker, quantity=0, reserved=0, average_cost=ZERO
            )
        self.changed.add(ticker)
        return self.positions[ticker]

    def buy(self, txn: Transaction, cost: Decimal) -> None:
        position = self.position_to_change(txn.user_id, txn.ticker)
        self.balance -= cost
        held_cost = position.quantity * position.average_cost + cost
        position.quantity += txn.transaction_volume
        # Rounded up, as the shares sold are costed below: realized P&L never shows a gain
        # the cash did not make (positions are not cash, but their P&L must not flatter).
        position.average_cost = price_to_pay(held_cost / position.quantity)

    def sell(self, txn: Transaction, proceeds: Decimal) -> None:
        position = self.position_to_change(txn.user_id, txn.ticker)
        sold_cost = cash_to_pay(position.average_cost * txn.transaction_volume)
        position.realized_pnl += proceeds - sold_cost
        position.quantity -= txn.transaction_volume
        if position.quantity == 0:
            position.average_cost = ZERO
        self.balance += proceeds


def _apply_market(book: _Book, txn: Transaction) -> str | None:
    """Settle a pending market order from unreserved cash or shares; None on success."""
    # A failed transaction changes nothing: not even an empty position row is created.
    if txn.is_buy:
        if book.buying_power < txn.transaction_price:
            return FailureReason.INSUFFICIENT_FUNDS
        book.buy(txn, txn.transaction_price)
        return None
    held = book.positions.get(txn.ticker)
    if held is None or held.quantity - held.reserved < txn.transaction_volume:
        return FailureReason.INSUFFICIENT_SHARES
    book.sell(txn, txn.transaction_price)
    return None


def _fill_open(book: _Book, txn: Transaction, price: Decimal) -> str | None:
    """Fill a ready open order at `price`, spending its own reservation; None on success."""
    _release_in_book(book, txn)  # the reservation is this order's to spend
    amount = _cash_for(txn, price * txn.transaction_volume)
    txn.unit_price, txn.transaction_price = price, amount
    if txn.is_buy:
        if book.buying_power < amount:  # a stop buy that filled above its collar
            return FailureReason.INSUFFICIENT_FUNDS
        book.buy(txn, amount)
        txn.filled_price = price
        return None
    book.sell(txn, amount)
    txn.filled_price = price
    return None


def settlement_mark(user_id: int) -> str:
    """The queued mark (stockflow.queued) of a user's settlement task."""
    return f"settle:{user_id}"


def _release_in_book(book: _Book, txn: Transaction) -> None:
    if txn.is_buy:
        book.reserved -= txn.transaction_price
    else:
        book.position_to_change(txn.user_id, txn.ticker).reserved -= txn.transaction_volume


def _save_settled(settled: list[tuple[Transaction, tuple[str, ...]]]) -> None:
    """One UPDATE per distinct set of new values: a batch of market orders filled at one close
    is one statement (bulk_update would build a CASE per field and row)."""
    groups = defaultdict(list)
    for txn, fields in settled:
        groups[tuple((name, getattr(txn, name)) for name in fields)].append(txn.pk)
    for values, ids in groups.items():
        Transaction.objects.filter(pk__in=ids).update(**dict(values))


def transactions_settle_for_user(*, user_id: int) -> list[Transaction]:
    """Settle the user's ready orders in submission order; return those settled.

    Ready: `pending` (market orders), `open` orders a quote made fillable, and `open`
    orders past their expiry.
    """
    # Before reading: a submission that finds the mark still set is read below.
    clear_queued(settlement_mark(user_id))
    now = timezone.now()
    with atomic():
        # NO KEY UPDATE: still excludes other settlements, but does not block the
        # FK KEY SHARE lock that inserting a new transaction takes on the user row.
        user = User.objects.select_for_update(no_key=True).filter(pk=user_id).first()
        if user is None:
            return []
        due = list(
            Transaction.objects.select_for_update(no_key=True)
            .filter(user_id=user_id)
            .filter(
                Q(status=PENDING)
                | Q(status=OPEN, ready_price__isnull=False)
                | Q(status=OPEN, expires_at__lte=now)
            )
            .order_by("id")
        )
        if not due:
            return []
        tickers = sorted({txn.ticker for txn in due})
        locked_positions = (
            Position.objects.select_for_update(no_key=True)
            .filter(user_id=user_id, ticker__in=tickers)
            .order_by("ticker")
        )
        book = _Book(
            balance=user.balance,
            reserved=user.reserved,
            positions={p.ticker: p for p in locked_positions},
        )

        settled, events = [], []
        for txn in due:
            if txn.status == PENDING:
                reason = _apply_market(book, txn)
            elif _past_cutoff(txn, now):  # before the fill: a day order ends at its cut-off
                _release_in_book(book, txn)
                reason = FailureReason.EXPIRED
            elif txn.ready_price is not None and _holds(txn, txn.ready_price):
                reason = _fill_open(book, txn, txn.ready_price)
            else:  # replaced since a quote made it ready: wait for the next one
                txn.ready_price = txn.ready_at = None
                txn.save(update_fields=["ready_price", "ready_at"])
                continue
            # A market order's prices were set at submission: only its outcome is written.
            changed = MARKET_SETTLED_FIELDS if txn.status == PENDING else SETTLED_FIELDS
            if txn.status == PENDING and reason is None:  # a market order fills at its price
                txn.filled_price = txn.unit_price
            if reason == FailureReason.EXPIRED:
                txn.status = TransactionStatus.EXPIRED
            else:
                txn.status = TransactionStatus.FAILED if reason else TransactionStatus.COMPLETED
            txn.failure_reason = reason
            txn.settled_at = now
            settled.append((txn, changed))
            # Each order's event carries the account as that order left it.
            data = order_event_data(txn, balance=book.balance, reserved=book.reserved)
            events.append((user, txn.status, data))

        User.objects.filter(pk=user_id).update(balance=book.balance, reserved=book.reserved)
        for ticker in sorted(book.changed):
            book.positions[ticker].save()
        _save_settled(settled)
        events_record(events)  # last: it locks the account's event sequence

    settled = [txn for txn, _ in settled]
    for txn in settled:
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
    return settled
