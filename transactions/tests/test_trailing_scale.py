"""Trailing stops at scale: one set-based UPDATE moves the stops a quote improves, exactly as
the Python rule would, through an index, in a bounded number of statements and seconds."""

import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from events.models import Event
from stocks.models import StockData
from stocks.services import quotes_ingest
from stocks.tests.factories import StockDataFactory
from transactions.models import Position, Transaction, TransactionStatus
from transactions.services import (
    conditions,
    orders_check_for_ticker,
    transaction_submit,
    triggers,
)
from transactions.tests.factories import PositionFactory
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 6, 15, 0, tzinfo=UTC)
OPEN = TransactionStatus.OPEN
# The moved stops and the statements that move them are PostgreSQL's.
postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the set-based statement is PostgreSQL's"
)


def armed(*, user, ticker, side, anchor, order_type="trailing_stop", volume=1, **prices):
    """An open order as submission leaves it (armed by the service's own rule), unsaved."""
    order = Transaction(
        user=user,
        ticker=ticker,
        transaction_type=side,
        transaction_volume=volume,
        unit_price=Decimal("1.0000"),
        transaction_price=Decimal("1.00"),
        status=OPEN,
        order_type=order_type,
        time_in_force="gtc",
        trail_anchor=anchor if order_type == "trailing_stop" else None,
        **prices,
    )
    conditions._arm(order)
    return order


def quote(ticker: str, close: Decimal, minutes: int = 1) -> StockData:
    """An unchecked quote of `ticker`, as ingestion stores it before the worker's check."""
    return StockDataFactory(
        ticker=ticker,
        close_price=close,
        open_price=close,
        timestamp=T0 + timedelta(minutes=minutes),
    )


def moved_columns(order: Transaction) -> tuple:
    """What moving a trailing stop writes: its anchor (a sell's trail_high, a buy's
    trail_low), its stop and the comparison it is armed with."""
    return order.trail_high, order.trail_low, order.stop_price, order.rises_to, order.falls_to


def price(rng: random.Random, below: int) -> Decimal:
    """A price of 4 places in (0, below), of any magnitude from 0.0001 up."""
    return Decimal(rng.randint(1, rng.choice([10, 10**3, 10**6, below * 10**4 - 1]))).scaleb(-4)


def halfway_cases(rng: random.Random, count: int) -> list[tuple[Decimal, Decimal]]:
    """(close, trail_percent) pairs whose trail ends in exactly half a unit of the 4th place,
    where ROUND_HALF_UP and PostgreSQL's round() could part ways: a close ending in 5 (in its
    4th place) and an odd multiple of 10 percent, or a close ending in an odd digit and 50 %."""
    cases = [(Decimal("100.0001"), Decimal("50")), (Decimal("0.0003"), Decimal("50"))]
    while len(cases) < count:
        whole = rng.randint(0, 10 ** rng.randint(0, 9)) * 10
        if rng.random() < 0.5:
            cases.append((Decimal(whole + 5).scaleb(-4), Decimal(rng.choice([10, 30, 70, 90]))))
        else:
            cases.append((Decimal(whole + rng.choice([1, 3, 5, 7, 9])).scaleb(-4), Decimal(50)))
    for close, percent in cases:
        assert (close * percent / 100).scaleb(4) % 1 == Decimal("0.5")
    return cases


@postgres_only
def test_a_quote_moves_each_trailing_stop_exactly_as_the_python_rule_does():
    rng = random.Random(13)
    user = UserFactory()
    orders, closes = [], {}
    # Random closes and trails of every magnitude, and trails that end in exactly half a unit.
    cases = [(price(rng, 10**9), None) for _ in range(40)] + halfway_cases(rng, 40)
    for n, (close, halfway_percent) in enumerate(cases):
        ticker = f"T{n}"
        closes[ticker] = close
        for side in ("SELL", "BUY") * 15:
            step = price(rng, 10) if side == "BUY" else min(price(rng, 10), close / 2)
            # the anchor this close improves: a sell's is below it, a buy's above it
            anchor = (close - step if side == "SELL" else close + step).quantize(close)
            if anchor <= 0:
                continue
            if halfway_percent is not None:
                prices = {"trail_percent": halfway_percent}
            elif rng.random() < 0.5:
                prices = {"trail_percent": Decimal(rng.randint(1, 999_999)).scaleb(-4)}
            else:
                prices = {"trail_price": price(rng, 10**6) if side == "BUY" else anchor / 2}
                prices["trail_price"] = max(
                    prices["trail_price"].quantize(close), Decimal("0.0001")
                )
            order = armed(user=user, ticker=ticker, side=side, anchor=anchor, **prices)
            if order.stop_price > 0 and order.stop_price != anchor:  # as submission requires
                orders.append(order)
    Transaction.objects.bulk_create(orders)
    expected = {}
    for order in Transaction.objects.filter(user=user):
        order.trail_anchor = closes[order.ticker]
        conditions._arm(order)
        expected[order.pk] = moved_columns(order)

    for ticker, close in closes.items():
        quote(ticker, close)
        orders_check_for_ticker(ticker=ticker)

    got = {order.pk: moved_columns(order) for order in Transaction.objects.filter(user=user)}
    assert len(got) > 2000
    assert {pk: row for pk, row in got.items() if row != expected[pk]} == {}


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Run what a real commit would: the eager check-orders and settlement tasks."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def market(commits):
    """`market(close)` stores the next AAPL quote (a minute after the last) at that close."""
    minutes = iter(range(1, 10_000))

    def store(close: Decimal):
        at = T0 + timedelta(minutes=next(minutes))
        row = {"open_price": close, "close_price": close, "high": close, "low": close}
        with commits():
            quotes_ingest(quotes=[{"ticker": "AAPL", "volume": 1, "timestamp": at, **row}])

    store(Decimal("100.0000"))
    return store


def test_moved_trailing_stops_trigger_and_fill_at_the_close_that_reaches_them(
    market, commits, monkeypatch
):
    seller = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=seller, quantity=20, average_cost=Decimal("90.0000"))
    buyer = UserFactory(balance=Decimal("10000.00"))

    def trailing(user, side, **trail):
        with commits():
            return transaction_submit(
                user=user,
                ticker="AAPL",
                transaction_type=side,
                transaction_volume=10,
                order_type="trailing_stop",
                time_in_force="gtc",
                **trail,
            )

    # At 100: sell stops at 95 and 80, buy stops at 105 and 120.
    sell_5 = trailing(seller, "SELL", trail_price=Decimal("5"))
    sell_20pc = trailing(seller, "SELL", trail_percent=Decimal("20"))
    buy_5 = trailing(buyer, "BUY", trail_price=Decimal("5"))
    buy_20pc = trailing(buyer, "BUY", trail_percent=Decimal("20"))
    market(Decimal("104.0000"))  # the sells' anchors rise: stops 99 and 83.2
    market(Decimal("96.0000"))  # the buys' anchors fall (stops 101, 115.2); 96 <= 99 sells
    market(Decimal("102.0000"))  # 102 >= 101 buys

    for order in (sell_5, sell_20pc, buy_5, buy_20pc):
        order.refresh_from_db()
    assert (sell_5.status, sell_5.filled_price) == ("completed", Decimal("96.0000"))
    assert (buy_5.status, buy_5.filled_price) == ("completed", Decimal("102.0000"))
    assert moved_columns(sell_20pc) == (
        Decimal("104.0000"),
        None,
        Decimal("83.2000"),
        None,
        Decimal("83.2000"),
    )
    assert moved_columns(buy_20pc) == (
        None,
        Decimal("96.0000"),
        Decimal("115.2000"),
        Decimal("115.2000"),
        None,
    )
    assert sell_20pc.status == buy_20pc.status == "open"
    # Each "triggered" event states the account as it stood: before the fill, with the
    # order's reservation still held (buy_5 holds 105 x 1.05 x 10, buy_20pc 120 x 1.05 x 10).
    triggered = [
        (e.data["order"]["id"], e.data["balance"], e.data["reserved"])
        for e in Event.objects.filter(type="triggered").order_by("id")
    ]
    assert triggered == [
        (sell_5.pk, "0.00", "0.00"),
        (buy_5.pk, "10000.00", "2362.50"),
    ]
    seller.refresh_from_db(), buyer.refresh_from_db()
    assert (seller.balance, seller.reserved) == (Decimal("960.00"), Decimal("0.00"))
    assert (buyer.balance, buyer.reserved) == (Decimal("8980.00"), Decimal("1260.00"))
    held = Position.objects.get(user=seller, ticker="AAPL")
    assert (held.quantity, held.reserved) == (10, 10)


# Measured on main: one quote moving 2,000 trailing stops took 1.2 s and 8,000 took 14.2 s
# (bulk_update's CASE per row is quadratic), so 20,000 would take minutes.
SCALE_STOPS = 20_000
SCALE_SECONDS = 5


@postgres_only
@pytest.mark.timeout(60)
def test_one_quote_moving_20000_trailing_stops_is_checked_in_a_few_seconds():
    users = UserFactory.create_batch(20)
    Transaction.objects.bulk_create(
        armed(
            user=users[n % len(users)],
            ticker="AAPL",
            side="SELL",
            anchor=Decimal("100.0000"),
            **(
                {"trail_price": Decimal(1 + n % 50)}
                if n % 2
                else {"trail_percent": Decimal(n % 97 + 1).scaleb(-1)}
            ),
        )
        for n in range(SCALE_STOPS)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE transactions_transaction")
    quote("AAPL", Decimal("110.0000"))

    started = time.monotonic()
    orders_check_for_ticker(ticker="AAPL")
    seconds = time.monotonic() - started

    print(f"one quote moved {SCALE_STOPS} trailing stops in {seconds:.2f}s")
    assert Transaction.objects.filter(trail_high=Decimal("110.0000")).count() == SCALE_STOPS
    assert not Transaction.objects.filter(ready_price__isnull=False).exists()
    assert seconds < SCALE_SECONDS


# SAVEPOINT, lock the quotes, the newest checked quote, move the trailing stops (one UPDATE),
# lock the orders the close reaches, one UPDATE per kind of change (limits made ready; stops
# triggered and ready; stop-limits triggered and re-armed at their limit, ready), mark the
# quote checked, number the "triggered" events, insert them with their accounts as of their
# numbers (one statement each, for every account), RELEASE SAVEPOINT.
CHECK_QUERIES = 12


@postgres_only
@pytest.mark.parametrize("per_kind", [1, 4, 25])
def test_checking_a_quote_takes_the_same_statements_however_many_orders_it_moves_or_triggers(
    per_kind, django_assert_num_queries
):
    users = UserFactory.create_batch(per_kind)
    orders = []
    for user in users:
        at_100 = {"user": user, "ticker": "AAPL", "anchor": Decimal("100.0000")}
        orders += [
            # moved by a close of 110: its stop rises to 105
            armed(side="SELL", trail_price=Decimal("5"), **at_100),
            # not moved (110 is no new low) but reached: its stop is 105
            armed(side="BUY", trail_price=Decimal("5"), **at_100),
            # a limit buy at 120 becomes ready to fill
            armed(side="BUY", order_type="limit", limit_price=Decimal("120"), **at_100),
            # a stop-limit sell triggers at its stop 115 and is ready at its limit 105
            armed(
                side="SELL",
                order_type="stop_limit",
                stop_price=Decimal("115"),
                limit_price=Decimal("105"),
                **at_100,
            ),
        ]
    Transaction.objects.bulk_create(orders)
    quote("AAPL", Decimal("110.0000"))

    with django_assert_num_queries(CHECK_QUERIES):
        users_ready = orders_check_for_ticker(ticker="AAPL")

    assert users_ready == {user.pk for user in users}
    rows = Transaction.objects.order_by("id")
    assert [
        (o.order_type, o.transaction_type, o.ready_price, o.rises_to, o.falls_to) for o in rows
    ] == [
        ("trailing_stop", "SELL", None, None, Decimal("105.0000")),
        ("trailing_stop", "BUY", Decimal("110.0000"), Decimal("105.0000"), None),
        ("limit", "BUY", Decimal("110.0000"), None, Decimal("120.0000")),
        ("stop_limit", "SELL", Decimal("110.0000"), Decimal("105.0000"), None),
    ] * per_kind
    assert rows.filter(triggered_at__isnull=False).count() == 2 * per_kind


@postgres_only
def test_a_quote_finds_the_trailing_stops_it_moves_with_an_index_scan():
    user = UserFactory()
    # 4,000 trailing stops a close of 30 does not move (sells anchored at 30 and above, buys
    # at 30 and below), and 4 that it does.
    rows = [
        armed(user=user, ticker="AAPL", side=side, anchor=anchor, trail_price=Decimal("1"))
        for side, anchors in (
            ("SELL", [Decimal(n) for n in range(30, 2030)]),
            ("BUY", [Decimal(n).scaleb(-2) for n in range(1001, 3001)]),  # 10.01 to 30.00
        )
        for anchor in anchors
    ]
    rows += [
        armed(user=user, ticker="AAPL", side=side, anchor=Decimal(anchor), trail_price=Decimal("1"))
        for side, anchor in (("SELL", 28), ("SELL", 29), ("BUY", 31), ("BUY", 32))
    ]
    Transaction.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE transactions_transaction")
        sql, params = triggers.move_trailing_stops_sql(ticker="AAPL", close=Decimal("30"))
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    print(plan)
    assert "Index Scan on txn_open_trail_high" in plan, plan
    assert "Index Scan on txn_open_trail_low" in plan, plan
    assert "Seq Scan" not in plan, plan
    # the sub-select locks in id order, as settlement and cancel do
    assert "LockRows" in plan and "Sort Key: transactions_transaction.id" in plan, plan
    assert triggers._move_trailing_stops(ticker="AAPL", close=Decimal("30")) == 4


def test_on_a_database_without_exact_numeric_sql_the_stops_move_in_python(monkeypatch):
    user = UserFactory()
    at = {"user": user, "ticker": "AAPL", "trail_percent": Decimal("50")}
    Transaction.objects.bulk_create(
        [
            armed(side="SELL", anchor=Decimal("100.0000"), **at),
            armed(side="BUY", anchor=Decimal("100.0003"), **at),
            armed(side="BUY", anchor=Decimal("90.0000"), **at),
        ]
    )
    monkeypatch.setattr(triggers, "_exact_numeric_sql", lambda: False)

    # half-way: 100.0001 - 50.00005 and 100.0001 + 50.00005 round up
    assert triggers._move_trailing_stops(ticker="AAPL", close=Decimal("100.0001")) == 2

    assert [moved_columns(o) for o in Transaction.objects.order_by("id")] == [
        (Decimal("100.0001"), None, Decimal("50.0001"), None, Decimal("50.0001")),
        (None, Decimal("100.0001"), Decimal("150.0002"), Decimal("150.0002"), None),
        (None, Decimal("90.0000"), Decimal("135.0000"), Decimal("135.0000"), None),
    ]
