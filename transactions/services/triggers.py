"""Triggers: what a stored quote does to the open orders of its ticker.

A stored quote never fills an order inside the request that stored it: a worker's
`orders_check_for_ticker` moves trailing stops, finds the open orders its close triggers
with one indexed query, marks them ready at that close, and hands them to the per-user
settlement.
"""

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import F, Q
from django.db.transaction import atomic
from django.utils import timezone

from stocks.models import StockData

from ..models import OrderType, Transaction, TransactionStatus, TransactionType
from .conditions import _arm, _past_cutoff, _react
from .events import _record

OPEN = TransactionStatus.OPEN


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


def _apply_close(ticker: str, close: Decimal, now: datetime) -> tuple[set[int], list[tuple]]:
    """Move the trailing stops that this close improves, then trigger the open orders it
    reaches. Returns the users with orders now ready to fill, and the `(events, order)` of
    the orders it triggered, to record.

    A fixed number of statements whatever the number of orders moved or triggered: one
    UPDATE moves the stops, one SELECT locks the orders reached, one UPDATE writes each kind
    of change."""
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
    for values, ids in changes.items():
        Transaction.objects.filter(pk__in=ids).update(**dict(values))
    return users, triggered


def orders_check_for_ticker(*, ticker: str) -> set[int]:
    """Apply the ticker's unchecked quotes, in timestamp order, to its open orders, and mark
    the orders they reach ready to fill. Returns the users with orders ready to fill (for
    the task to hand to their settlement).

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
        users, triggered = set(), []
        for quote in quotes:
            if newest_checked is None or quote.timestamp > newest_checked:
                ready, reached = _apply_close(ticker, quote.close_price, now)
                users |= ready
                triggered += reached
                newest_checked = quote.timestamp
        StockData.objects.filter(pk__in=[q.pk for q in quotes]).update(orders_checked_at=now)
        # After every order lock: recording locks the accounts' event sequences last. Each
        # "triggered" event states its account as it stands then: one read for them all.
        _record(triggered)
    return users
