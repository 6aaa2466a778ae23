"""Every rule about money: submitting, reserving, triggering, cancelling, replacing, settling.

A market order is priced at submission from the ticker's latest close and stored `pending`;
any other order is stored `open` with a reservation: cash on the user for a buy
(`reserved`), shares on the position for a sell. The settlement task is enqueued only
after a row commits.

Settlement locks the user's row, then the transactions it settles, then the positions they
touch in ticker order (the one lock order every service here follows), and settles in
submission (id) order the user's `pending` orders, the `open` orders a quote made ready
to fill, and the `open` orders past their expiry. Only such rows are touched and each
leaves that state, so running it twice, or concurrently from two workers, changes nothing
the second time. No order spends reserved cash or sells reserved shares but its own.

A stored quote never fills an order inside the request that stored it: a worker's
`orders_check_for_ticker` moves trailing stops, finds the open orders its close triggers
with one indexed query, marks them ready at that close, and hands them to the per-user
settlement.

Deposits and withdrawals (`transfer_create`) take the user's lock too, and write their
ledger row in the same database transaction as the balance they change.
"""

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.db import IntegrityError, connection
from django.db.models import F, Q
from django.db.transaction import atomic, on_commit
from django.utils import timezone

from stockflow.cache import invalidate_on_commit, user_namespace
from stockflow.events import orders_group, publish_many_on_commit
from stockflow.money import (
    MAX_BALANCE,
    MAX_TRANSFER_AMOUNT,
    ZERO,
    cash_exact,
    cash_to_pay,
    cash_to_receive,
    is_whole_cents,
    price_to_pay,
    quantize_price,
)
from stockflow.queued import clear_queued, mark_queued
from stocks.errors import UnknownTicker
from stocks.models import StockData
from stocks.selectors import latest_close
from users.models import User

from .errors import (
    BalanceLimitExceeded,
    InsufficientBuyingPower,
    InsufficientShares,
    InvalidTransferAmount,
    NotOpen,
    NotPending,
    TrailTooWide,
)
from .models import (
    FailureReason,
    OrderType,
    Position,
    TimeInForce,
    Transaction,
    TransactionStatus,
    TransactionType,
    Transfer,
    TransferDirection,
)

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
Row = TypeVar("Row")  # a model instance with an idempotency_key
PENDING, OPEN = TransactionStatus.PENDING, TransactionStatus.OPEN
STOPS = (OrderType.STOP, OrderType.TRAILING_STOP)
HUNDRED = Decimal(100)
MARKET_SETTLED_FIELDS = ("status", "failure_reason", "settled_at", "filled_price")
SETTLED_FIELDS = (
    "status",
    "failure_reason",
    "settled_at",
    "unit_price",
    "transaction_price",
    "filled_price",
)


def _enqueue_settlement(user_id: int) -> None:
    from .tasks import settle_user_transactions_task

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


# --- events -----------------------------------------------------------------------------


def order_event(event: str, txn: Transaction, *, balance: Decimal, reserved: Decimal) -> dict:
    """An order event as WebSocket clients receive it: the order and the account after it."""
    return {
        "event": event,
        "order": {name: getattr(txn, name) for name in Transaction.API_FIELDS},
        "balance": balance,
        "reserved": reserved,
        "buying_power": balance - reserved,
    }


def _events(events, txn: Transaction, *, balance: Decimal, reserved: Decimal) -> list[tuple]:
    """`(group, event)` pairs for `publish_many_on_commit`: the order's state as it commits."""
    group = orders_group(txn.user_id)
    return [(group, order_event(e, txn, balance=balance, reserved=reserved)) for e in events]


def _publish(events, txn: Transaction, *, balance: Decimal, reserved: Decimal) -> None:
    """Publish one order's events after the commit, in one go (one connection to the layer)."""
    publish_many_on_commit(_events(events, txn, balance=balance, reserved=reserved))


# --- order conditions -------------------------------------------------------------------


def _trailing_stop(order: Transaction) -> Decimal:
    """Sell: best (highest) close minus the trail; buy: best (lowest) close plus the trail."""
    anchor = order.trail_anchor
    if order.trail_price is not None:
        trail = order.trail_price
    else:
        trail = anchor * order.trail_percent / HUNDRED
    return quantize_price(anchor + trail if order.is_buy else anchor - trail)


def _arm(order: Transaction) -> None:
    """State the one comparison that makes this open order act next (`rises_to`/`falls_to`)."""
    if order.order_type == OrderType.TRAILING_STOP:
        order.stop_price = _trailing_stop(order)
    acts_as_limit = order.order_type == OrderType.LIMIT or (
        order.order_type == OrderType.STOP_LIMIT and order.triggered_at is not None
    )
    if acts_as_limit:  # buy when close <= limit, sell when close >= limit
        price, rises = order.limit_price, not order.is_buy
    else:  # a stop: buy when close >= stop, sell when close <= stop
        price, rises = order.stop_price, order.is_buy
    order.rises_to, order.falls_to = (price, None) if rises else (None, price)


def _holds(order: Transaction, close: Decimal) -> bool:
    if order.rises_to is not None:
        return close >= order.rises_to
    return close <= order.falls_to


def _react(order: Transaction, close: Decimal, now: datetime) -> list[str]:
    """Apply a close to an armed open order: trigger its stop, make it ready to fill at that
    close. Returns the events that happened ("triggered")."""
    if not _holds(order, close):
        return []
    events = []
    if order.order_type == OrderType.STOP_LIMIT and order.triggered_at is None:
        order.triggered_at = now
        events.append("triggered")
        _arm(order)  # from now on a limit order
        if not _holds(order, close):
            return events
    elif order.order_type in STOPS:
        order.triggered_at = now
        events.append("triggered")
    order.ready_price, order.ready_at = close, now
    return events


def _cash_for(order: Transaction, amount: Decimal) -> Decimal:
    """price x volume in cash, rounded against the account holder: a buy pays (up, so at
    least 0.01), a sell receives (down). Rounding never creates cash."""
    return cash_to_pay(amount) if order.is_buy else cash_to_receive(amount)


def _price_open_order(order: Transaction) -> None:
    """An open order's unit_price and transaction_price: what it reserves (a buy) or asks
    (a sell) per share and in all. A stop buy fills at the triggering close, which may be
    above its stop, so it reserves STOP_BUY_COLLAR more, rounded up."""
    if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        per_share = order.limit_price
    elif order.is_buy:
        per_share = price_to_pay(order.stop_price * (1 + settings.STOP_BUY_COLLAR))
    else:
        per_share = order.stop_price
    order.unit_price = per_share
    order.transaction_price = _cash_for(order, per_share * order.transaction_volume)


def _past_cutoff(order: Transaction, now: datetime) -> bool:
    """An order whose expiry has come is expired, whatever else it could still do: replace,
    settlement and fill all ask this first, so a day order never outlives its cut-off."""
    return order.expires_at is not None and order.expires_at <= now


def next_market_close(now: datetime) -> datetime:
    """The first MARKET_CLOSE_UTC cut-off after `now`: when a day order expires."""
    cutoff = time.fromisoformat(settings.MARKET_CLOSE_UTC)
    today = datetime.combine(now.date(), cutoff, tzinfo=now.tzinfo)
    return today if today > now else today + timedelta(days=1)


# --- reservations -----------------------------------------------------------------------


def _reserve(order: Transaction, *, releasing: Decimal | int = 0) -> None:
    """Reserve what `order` needs, less `releasing` (what it held before a replace).

    A conditional UPDATE: its row count proves the unreserved cash or shares covered it,
    however many submissions race.
    """
    if order.is_buy:
        needed = order.transaction_price - releasing
        if needed == 0:
            return
        reserved = User.objects.filter(
            pk=order.user_id, balance__gte=F("reserved") + needed
        ).update(reserved=F("reserved") + needed)
        if not reserved:
            user = User.objects.get(pk=order.user_id)
            raise InsufficientBuyingPower(
                needed=order.transaction_price, available=user.buying_power + releasing
            )
        return
    needed = order.transaction_volume - releasing
    if needed == 0:
        return
    reserved = Position.objects.filter(
        user_id=order.user_id, ticker=order.ticker, quantity__gte=F("reserved") + needed
    ).update(reserved=F("reserved") + needed)
    if not reserved:
        held = Position.objects.filter(user_id=order.user_id, ticker=order.ticker).first()
        raise InsufficientShares(
            needed=order.transaction_volume,
            ticker=order.ticker,
            available=(held.available if held else 0) + releasing,
        )


def _release(order: Transaction, *, held: Decimal | int | None = None) -> None:
    """Give back an open order's reservation (cancel; a replace to ioc that cannot fill):
    `held`, what it held before a replace changed its terms, else what it holds."""
    if order.is_buy:
        amount = order.transaction_price if held is None else held
        User.objects.filter(pk=order.user_id).update(reserved=F("reserved") - amount)
    else:
        shares = order.transaction_volume if held is None else held
        Position.objects.filter(user_id=order.user_id, ticker=order.ticker).update(
            reserved=F("reserved") - shares
        )


def _account(user_id: int) -> User:
    return User.objects.only("balance", "reserved", "username").get(pk=user_id)


# --- submission -------------------------------------------------------------------------


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
            user.load_money()  # the event states the account; authentication may not have it
            _publish(["submitted"], order, balance=user.balance, reserved=user.reserved)
            _settle_on_commit(user.pk)
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
    if order.stop_price is not None and order.stop_price <= 0:
        raise TrailTooWide(close=close)
    _price_open_order(order)  # a trailing stop reserves from where it starts
    events = _react(order, close, now)
    if time_in_force == TimeInForce.DAY:
        order.expires_at = next_market_close(now)
    with atomic():
        if time_in_force == TimeInForce.IOC and order.ready_price is None:
            # Its condition does not hold now: it ends at once and reserves nothing.
            order.status = TransactionStatus.EXPIRED
            order.failure_reason = FailureReason.EXPIRED
            order.settled_at = now
            order.save()
            account = _account(order.user_id)
            events = ["submitted", "expired"]
            _publish(events, order, balance=account.balance, reserved=account.reserved)
            return
        _reserve(order)
        order.save()
        account = _account(order.user_id)
        invalidate_on_commit(user_namespace(account.username))
        events = ["submitted", *events]
        _publish(events, order, balance=account.balance, reserved=account.reserved)
        if order.ready_price is not None:  # marketable: fills at this close
            _settle_on_commit(order.user_id)


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


# --- cancel and replace -----------------------------------------------------------------


def _lock_order(transaction: Transaction) -> tuple[User, Transaction]:
    """Lock the order's user, then the order itself: settlement's lock order."""
    user = User.objects.select_for_update(no_key=True).get(pk=transaction.user_id)
    txn = Transaction.objects.select_for_update(no_key=True).get(pk=transaction.pk)
    return user, txn


def transaction_cancel(*, transaction: Transaction) -> Transaction:
    """Cancel a pending or open order and release its reservation, or refuse (NotPending)
    when a settlement, an expiry or another cancel got there first."""
    with atomic():
        user, txn = _lock_order(transaction)
        if txn.status not in (PENDING, OPEN):
            raise NotPending(transaction_id=txn.pk, status=txn.status)
        if txn.status == OPEN:
            _release(txn)
        txn.status = TransactionStatus.CANCELLED
        txn.settled_at = timezone.now()
        txn.save(update_fields=["status", "settled_at"])
        account = _account(txn.user_id)
        invalidate_on_commit(user_namespace(user.username))
        _publish(["cancelled"], txn, balance=account.balance, reserved=account.reserved)
    logger.info("transaction_cancelled transaction_id=%s user_id=%s", txn.pk, txn.user_id)
    return txn


def transaction_replace(*, transaction: Transaction, changes: dict) -> Transaction:
    """Change an open order's volume, prices or time in force in place: it keeps its id and
    its place in the user's order, and its reservation is re-checked and adjusted at once.

    An order past its cut-off is expired here, as settlement would expire it, and the replace
    is refused (NotOpen, status expired): it can neither become gtc nor fill after its day.
    """
    with atomic():
        user, txn = _lock_order(transaction)
        now = timezone.now()
        if txn.status == OPEN and _past_cutoff(txn, now):
            _expire_open(txn, username=user.username, now=now)
        elif txn.status != OPEN:
            raise NotOpen(transaction_id=txn.pk, status=txn.status)
        else:
            _replace_open(txn, changes=changes, username=user.username, now=now)
            return txn
    # Refused once the expiry has committed: raising inside the block would roll it back.
    raise NotOpen(transaction_id=txn.pk, status=txn.status)


def _replace_open(txn: Transaction, *, changes: dict, username: str, now: datetime) -> None:
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
    if txn.stop_price is not None and txn.stop_price <= 0:
        raise TrailTooWide(close=txn.trail_anchor)
    _price_open_order(txn)
    events = ["replaced", *(_react(txn, close, now) if close is not None else [])]
    txn.replaced_at = now
    if txn.time_in_force == TimeInForce.IOC and txn.ready_price is None:
        _release(txn, held=held)
        txn.status = TransactionStatus.EXPIRED
        txn.failure_reason = FailureReason.EXPIRED
        txn.settled_at = now
        events.append("expired")
    else:
        _reserve(txn, releasing=held)
    txn.save()
    account = _account(txn.user_id)
    invalidate_on_commit(user_namespace(username))
    _publish(events, txn, balance=account.balance, reserved=account.reserved)
    if txn.ready_price is not None:
        _settle_on_commit(txn.user_id)


def _expire_open(txn: Transaction, *, username: str, now: datetime) -> None:
    """Expire the locked open order and release its reservation, as settlement does."""
    _release(txn)
    txn.status = TransactionStatus.EXPIRED
    txn.failure_reason = FailureReason.EXPIRED
    txn.settled_at = now
    txn.save(update_fields=["status", "failure_reason", "settled_at"])
    account = _account(txn.user_id)
    invalidate_on_commit(user_namespace(username))
    _publish(["expired"], txn, balance=account.balance, reserved=account.reserved)
    logger.info("transaction_expired transaction_id=%s user_id=%s", txn.pk, txn.user_id)


# --- settlement -------------------------------------------------------------------------


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
    clear_queued(_settlement_mark(user_id))
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
            events += _events([txn.status], txn, balance=book.balance, reserved=book.reserved)

        User.objects.filter(pk=user_id).update(balance=book.balance, reserved=book.reserved)
        for ticker in sorted(book.changed):
            book.positions[ticker].save()
        _save_settled(settled)
        invalidate_on_commit(user_namespace(user.username))
        publish_many_on_commit(events)

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


# --- triggers ---------------------------------------------------------------------------


def _open_orders(ticker: str):
    return Transaction.objects.filter(ticker=ticker, status=OPEN, ready_price__isnull=True)


def triggered_orders(*, ticker: str, close: Decimal):
    """The open orders of `ticker` that a close triggers: one query, a range scan of each of
    `txn_open_rises_to` and `txn_open_falls_to`, whatever the number of open orders that do
    not trigger."""
    return _open_orders(ticker).filter(Q(rises_to__lte=close) | Q(falls_to__gte=close))


# One statement moves every trailing stop a close improves: bulk_update wrote one CASE arm per
# row, which PostgreSQL evaluates per row (quadratic: 8,000 moved stops took 14 s). Here the
# new stop is `_trailing_stop` + `_arm` in SQL, computed once per row in the sub-select: round
# (numeric, 4) rounds half away from zero, which is quantize_price's ROUND_HALF_UP on these
# positive prices, and the percent is applied as * 0.01, exact in numeric, where / 100 would
# be rounded to the division's own scale first. The sub-select locks the rows in id order,
# the order in which settlement and cancel lock transactions, so neither can deadlock with a
# check; it finds them with a range scan of txn_open_trail_high and txn_open_trail_low (a
# sell's anchor is its trail_high, a buy's its trail_low: see models.py).
MOVE_TRAILING_STOPS_SQL = """
UPDATE {table} AS moving SET
    trail_high = CASE WHEN moved.is_buy THEN NULL ELSE %(close)s END,
    trail_low = CASE WHEN moved.is_buy THEN %(close)s END,
    stop_price = moved.stop,
    rises_to = CASE WHEN moved.is_buy THEN moved.stop END,
    falls_to = CASE WHEN moved.is_buy THEN NULL ELSE moved.stop END
FROM (
    SELECT id, transaction_type = %(buy)s AS is_buy,
           round(%(close)s + CASE WHEN transaction_type = %(buy)s THEN 1 ELSE -1 END
                 * coalesce(trail_price, %(close)s * trail_percent * 0.01), 4) AS stop
    FROM {table}
    WHERE ticker = %(ticker)s AND status = %(open)s AND ready_price IS NULL
      AND (trail_high < %(close)s OR trail_low > %(close)s)
    ORDER BY id
    FOR NO KEY UPDATE
) AS moved
WHERE moving.id = moved.id
"""
MOVED_FIELDS = ("trail_high", "trail_low", "stop_price", "rises_to", "falls_to")


def _exact_numeric_sql() -> bool:
    """Whether the database computes decimals exactly (PostgreSQL's numeric). SQLite, the
    embedded default, computes them in binary floating point: its stops move in Python."""
    return connection.vendor == "postgresql"


def move_trailing_stops_sql(*, ticker: str, close: Decimal) -> tuple[str, dict]:
    """The UPDATE that moves the trailing stops of `ticker` a close improves, and its params."""
    params = {
        "ticker": ticker,
        "close": close,
        "open": OPEN.value,
        "buy": TransactionType.BUY.value,
    }
    return MOVE_TRAILING_STOPS_SQL.format(table=Transaction._meta.db_table), params


def _move_trailing_stops(*, ticker: str, close: Decimal) -> int:
    """Move the trailing stops this close improves (a sell's anchor is below it, a buy's
    above) to it and re-arm them; returns how many moved."""
    if _exact_numeric_sql():
        with connection.cursor() as cursor:
            cursor.execute(*move_trailing_stops_sql(ticker=ticker, close=close))
            return cursor.rowcount
    moved = list(
        _open_orders(ticker)
        .select_for_update(no_key=True)
        .order_by("id")  # settlement's order of locking transactions
        .filter(Q(trail_high__lt=close) | Q(trail_low__gt=close))
    )
    groups = defaultdict(list)
    for order in moved:
        order.trail_anchor = close
        _arm(order)
        groups[tuple((name, getattr(order, name)) for name in MOVED_FIELDS)].append(order.pk)
    for values, ids in groups.items():  # one UPDATE per new stop, not a CASE arm per row
        Transaction.objects.filter(pk__in=ids).update(**dict(values))
    return len(moved)


def _trigger_changes(order: Transaction, events: list[str]) -> tuple[tuple[str, object], ...]:
    """What `_react` changed in `order`, as (column, value) pairs that every order changed the
    same way shares, so one UPDATE writes each kind of change (bulk_update wrote a CASE arm
    per row). A stop-limit re-armed at its limit (`_arm`) names the column, not its price."""
    changes = []
    if events:  # triggered
        changes.append(("triggered_at", order.triggered_at))
        if order.order_type == OrderType.STOP_LIMIT:
            limit = F("limit_price")  # buy when close <= limit, sell when close >= limit
            changes += [
                ("rises_to", None if order.is_buy else limit),
                ("falls_to", limit if order.is_buy else None),
            ]
    if order.ready_price is not None:
        changes += [("ready_price", order.ready_price), ("ready_at", order.ready_at)]
    return tuple(changes)


def _apply_close(ticker: str, close: Decimal, now: datetime) -> set[int]:
    """Move the trailing stops that this close improves, then trigger the open orders it
    reaches. Returns the users with orders now ready to fill.

    A fixed number of statements whatever the number of orders moved or triggered: one
    UPDATE moves the stops, one SELECT locks the orders reached, one reads their users'
    accounts, one UPDATE writes each kind of change."""
    _move_trailing_stops(ticker=ticker, close=close)
    hit = triggered_orders(ticker=ticker, close=close).select_for_update(no_key=True).order_by("id")
    users, triggered, changes = set(), [], defaultdict(list)
    for order in hit:
        if _past_cutoff(order, now):
            continue  # it expires, it does not fill
        events = _react(order, close, now)
        if order.ready_price is not None:
            users.add(order.user_id)
        if events:
            triggered.append((events, order))
        changes[_trigger_changes(order, events)].append(order.pk)
    # A "triggered" event states the account as it is: one read for all the users involved.
    accounts = User.objects.only("balance", "reserved").in_bulk(
        {order.user_id for _, order in triggered}
    )
    published = []
    for events, order in triggered:
        account = accounts[order.user_id]
        published += _events(events, order, balance=account.balance, reserved=account.reserved)
    publish_many_on_commit(published)
    for values, ids in changes.items():
        Transaction.objects.filter(pk__in=ids).update(**dict(values))
    return users


def orders_check_for_ticker(*, ticker: str) -> set[int]:
    """Apply the ticker's unchecked quotes, in timestamp order, to its open orders, and hand
    the orders they make ready to each user's settlement. Returns those users.

    The quote rows are locked, so two workers checking one ticker take turns, and the second
    finds nothing left; a quote older than one already checked triggers nothing.
    """
    now = timezone.now()
    with atomic():
        quotes = list(
            StockData.objects.select_for_update()
            .filter(ticker=ticker, orders_checked_at__isnull=True)
            .order_by("timestamp", "id")
        )
        if not quotes:
            return set()
        newest_checked = (
            StockData.objects.filter(ticker=ticker, orders_checked_at__isnull=False)
            .order_by("-timestamp")
            .values_list("timestamp", flat=True)
            .first()
        )
        users = set()
        for quote in quotes:
            if newest_checked is None or quote.timestamp > newest_checked:
                users |= _apply_close(ticker, quote.close_price, now)
                newest_checked = quote.timestamp
        StockData.objects.filter(pk__in=[q.pk for q in quotes]).update(orders_checked_at=now)
        for user_id in sorted(users):
            _settle_on_commit(user_id)
    return users


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
        from .tasks import check_orders_task

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


# --- transfers --------------------------------------------------------------------------


def transfer_amount_check(*, amount: Decimal) -> None:
    """Refuse (InvalidTransferAmount) an amount that is not in cents, > 0 and below
    MAX_TRANSFER_AMOUNT. Every path that moves cash in or out calls it: API, admin, service."""
    # Never rounded: an amount in fractions of a cent is refused, so no transfer moves cash
    # that was not asked for.
    if not ZERO < amount < MAX_TRANSFER_AMOUNT or not is_whole_cents(amount):
        raise InvalidTransferAmount(limit=MAX_TRANSFER_AMOUNT)


def transfer_create(
    *, user: User, direction: str, amount: Decimal, idempotency_key: str | None = None
) -> Transfer:
    """Deposit or withdraw cash. The ledger row and the new balance commit together, under the
    user's lock, so initial balance + deposits - withdrawals - completed buys + completed
    sells = balance at every commit.

    A withdrawal may take only the buying power (balance - reserved): cash held by open buy
    orders stays where it is. A deposit may not take the balance to MAX_BALANCE.
    """
    transfer_amount_check(amount=amount)
    amount = cash_exact(amount)  # 5 and 5.000 are stored and logged as 5.00
    with atomic():
        account = (
            User.objects.select_for_update(no_key=True)
            .only("balance", "reserved", "username")
            .get(pk=user.pk)
        )
        if direction == TransferDirection.DEPOSIT:
            balance = account.balance + amount
            if balance >= MAX_BALANCE:
                raise BalanceLimitExceeded(limit=MAX_BALANCE)
        elif direction == TransferDirection.WITHDRAWAL:
            if amount > account.buying_power:
                raise InsufficientBuyingPower(needed=amount, available=account.buying_power)
            balance = account.balance - amount
        else:
            raise ValueError(f"unknown transfer direction {direction!r}")
        User.objects.filter(pk=account.pk).update(balance=balance)
        transfer = Transfer.objects.create(
            user=user,
            direction=direction,
            amount=amount,
            balance_after=balance,
            idempotency_key=idempotency_key,
        )
        invalidate_on_commit(user_namespace(account.username))
    logger.info(
        "transfer_created transfer_id=%s user_id=%s direction=%s amount=%s balance=%s",
        transfer.pk,
        account.pk,
        direction,
        amount,
        balance,
    )
    return transfer


def _transfer_for_key(*, user: User, idempotency_key: str) -> Transfer | None:
    return _row_for_key(
        Transfer.objects.filter(user=user), idempotency_key=idempotency_key, created="created_at"
    )


def transfer_create_once(*, user: User, idempotency_key: str, **transfer) -> tuple[Transfer, bool]:
    """Transfer unless this key already made a transfer; return it and whether it is new."""
    return _create_once(
        lambda: transfer_create(user=user, idempotency_key=idempotency_key, **transfer),
        lambda: _transfer_for_key(user=user, idempotency_key=idempotency_key),
    )
