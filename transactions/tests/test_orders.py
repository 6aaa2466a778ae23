"""Limit, stop, stop-limit and trailing-stop orders: reservations, triggers, fills, expiry,
cancel and replace, with exact Decimal outcomes (tasks run in-process on each commit)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from events.models import Event
from stocks.models import StockData
from stocks.services import quotes_ingest
from stocks.tests.factories import StockDataFactory
from transactions import services
from transactions.errors import (
    InsufficientBuyingPower,
    InsufficientShares,
    NotOpen,
    NotPending,
    TrailTooWide,
)
from transactions.models import Position, Transaction
from transactions.services import (
    orders_due_to_expire,
    submission,
    transaction_submit,
    triggered_orders,
)
from transactions.tasks import expire_orders_task
from transactions.tests.factories import PositionFactory
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 6, 15, 0, tzinfo=UTC)


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Run what a real commit would: the eager check-orders and settlement tasks."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def market(commits):
    """`market(close)` stores the next AAPL quote (a minute after the last) at that close."""
    state = {"minute": 0}

    def store(close: str, ticker: str = "AAPL"):
        state["minute"] += 1
        with commits():
            quotes_ingest(
                quotes=[
                    {
                        "ticker": ticker,
                        "open_price": Decimal(close),
                        "close_price": Decimal(close),
                        "high": Decimal(close),
                        "low": Decimal(close),
                        "volume": 100,
                        "timestamp": T0 + timedelta(minutes=state["minute"]),
                    }
                ]
            )

    store("100.0000")
    return store


def submit(user, commits, **order):
    order = {"ticker": "AAPL", "transaction_volume": 10, **order}
    with commits():
        return transaction_submit(user=user, **order)


def account(user):
    user.refresh_from_db()
    return user.balance, user.reserved


def position(user, ticker="AAPL"):
    held = Position.objects.get(user=user, ticker=ticker)
    return held.quantity, held.reserved, held.average_cost, held.realized_pnl


def state(txn):
    txn.refresh_from_db()
    return txn.status, txn.failure_reason, txn.unit_price, txn.transaction_price, txn.filled_price


# --- limit buys ----------------------------------------------------------------------------


def test_a_limit_buy_below_the_market_waits_open_and_reserves_limit_times_volume(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))

    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )

    assert state(txn) == ("open", None, Decimal("95.0000"), Decimal("950.00"), None)
    assert account(user) == (Decimal("1000.00"), Decimal("950.00"))
    assert user.buying_power == Decimal("50.00")
    assert (txn.time_in_force, txn.expires_at is not None, txn.triggered_at) == ("day", True, None)


def test_a_quote_at_or_below_the_limit_fills_the_buy_at_that_close(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )

    market("95.0100")  # above the limit: nothing
    assert state(txn)[0] == "open"
    market("94.5000")

    assert state(txn) == (
        "completed",
        None,
        Decimal("94.5000"),
        Decimal("945.00"),
        Decimal("94.5000"),
    )
    assert account(user) == (Decimal("55.00"), Decimal("0.00"))
    assert position(user) == (10, 0, Decimal("94.5000"), Decimal("0.00"))


def test_a_marketable_limit_buy_fills_at_once_at_the_current_close(market, commits):
    user = UserFactory(balance=Decimal("3000.00"))

    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("99.99")
    )
    assert state(txn)[0] == "open"  # the limit is below the close of 100

    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("100.50")
    )

    assert state(txn) == (
        "completed",
        None,
        Decimal("100.0000"),
        Decimal("1000.00"),
        Decimal("100.0000"),
    )


def test_a_limit_buy_the_buying_power_does_not_cover_is_refused_and_nothing_is_stored(
    market, commits
):
    user = UserFactory(balance=Decimal("949.99"))

    with pytest.raises(InsufficientBuyingPower) as refused:
        submit(user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95"))

    assert str(refused.value) == "This needs 950.00 of buying power; 949.99 is available."
    assert Transaction.objects.count() == 0
    assert account(user) == (Decimal("949.99"), Decimal("0.00"))


def test_reserved_cash_is_not_spent_by_a_later_market_buy(market, commits):
    user = UserFactory(balance=Decimal("1500.00"))
    limit = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("90")
    )

    market_buy = submit(user, commits, transaction_type="BUY", transaction_volume=7)

    assert state(market_buy)[:2] == ("failed", "insufficient_funds")  # 700 > 1500 - 900
    assert state(limit)[0] == "open"
    assert account(user) == (Decimal("1500.00"), Decimal("900.00"))
    fits = submit(user, commits, transaction_type="BUY", transaction_volume=6)
    assert state(fits)[:2] == ("completed", None)
    assert account(user) == (Decimal("900.00"), Decimal("900.00"))


# --- limit sells ---------------------------------------------------------------------------


def test_a_limit_sell_reserves_its_shares_and_fills_at_or_above_the_limit(market, commits):
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, quantity=10, average_cost=Decimal("80.0000"))

    txn = submit(
        user, commits, transaction_type="SELL", order_type="limit", limit_price=Decimal("105")
    )
    assert state(txn) == ("open", None, Decimal("105.0000"), Decimal("1050.00"), None)
    assert position(user)[:2] == (10, 10)

    market("104.9900")
    assert state(txn)[0] == "open"
    market("106.2500")

    assert state(txn)[:2] == ("completed", None)
    assert txn.filled_price == Decimal("106.2500")
    assert account(user) == (Decimal("1062.50"), Decimal("0.00"))
    # 1062.50 - 10 x 80.0000
    assert position(user) == (0, 0, Decimal("0.0000"), Decimal("262.50"))


def test_reserved_shares_are_not_sold_by_a_market_sell_nor_a_second_limit_sell(market, commits):
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, quantity=10, average_cost=Decimal("80.0000"))
    submit(user, commits, transaction_type="SELL", order_type="limit", limit_price=Decimal("120"))

    with pytest.raises(InsufficientShares) as refused:
        submit(
            user,
            commits,
            transaction_type="SELL",
            order_type="limit",
            limit_price=Decimal("130"),
            transaction_volume=1,
        )
    market_sell = submit(user, commits, transaction_type="SELL", transaction_volume=1)

    assert str(refused.value) == "This needs 1 unreserved AAPL shares; 0 are available."
    assert state(market_sell)[:2] == ("failed", "insufficient_shares")
    assert position(user)[:2] == (10, 10)


def test_a_limit_sell_without_any_position_is_refused(market, commits):
    user = UserFactory()

    with pytest.raises(InsufficientShares):
        submit(user, commits, transaction_type="SELL", order_type="limit", limit_price=Decimal("1"))

    assert Transaction.objects.count() == 0
    assert not Position.objects.exists()


# --- stops ---------------------------------------------------------------------------------


def test_a_stop_buy_reserves_the_collar_and_fills_at_the_triggering_close(market, commits):
    user = UserFactory(balance=Decimal("2000.00"))

    txn = submit(
        user, commits, transaction_type="BUY", order_type="stop", stop_price=Decimal("110")
    )
    # 110 x 1.05 = 115.5 per share
    assert state(txn) == ("open", None, Decimal("115.5000"), Decimal("1155.00"), None)
    assert account(user) == (Decimal("2000.00"), Decimal("1155.00"))

    market("109.9900")
    assert state(txn)[0] == "open"
    market("111.0000")

    txn.refresh_from_db()
    assert txn.triggered_at is not None
    assert state(txn) == (
        "completed",
        None,
        Decimal("111.0000"),
        Decimal("1110.00"),
        Decimal("111.0000"),
    )
    assert account(user) == (Decimal("890.00"), Decimal("0.00"))


def test_a_stop_buy_that_fills_above_its_collar_fails_without_the_free_cash(market, commits):
    user = UserFactory(balance=Decimal("1155.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="stop", stop_price=Decimal("110")
    )
    assert account(user) == (Decimal("1155.00"), Decimal("1155.00"))

    market("116.0000")  # 1160.00 > its 1155.00 reserved + 0.00 free

    assert state(txn)[:2] == ("failed", "insufficient_funds")
    assert account(user) == (Decimal("1155.00"), Decimal("0.00"))
    assert not Position.objects.exists()


def test_a_stop_sell_triggers_at_or_below_the_stop(market, commits):
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, quantity=10, average_cost=Decimal("100.0000"))
    txn = submit(
        user, commits, transaction_type="SELL", order_type="stop", stop_price=Decimal("95")
    )

    market("95.0100")
    assert state(txn)[0] == "open"
    market("93.0000")

    assert state(txn)[:2] == ("completed", None)
    assert account(user) == (Decimal("930.00"), Decimal("0.00"))
    assert position(user) == (0, 0, Decimal("0.0000"), Decimal("-70.00"))


def test_a_stop_limit_triggers_like_a_stop_then_waits_to_fill_like_a_limit(market, commits):
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, quantity=10, average_cost=Decimal("90.0000"))
    txn = submit(
        user,
        commits,
        transaction_type="SELL",
        order_type="stop_limit",
        stop_price=Decimal("95"),
        limit_price=Decimal("94"),
    )
    assert state(txn) == ("open", None, Decimal("94.0000"), Decimal("940.00"), None)

    market("93.0000")  # the stop triggers; 93 is below the sell limit of 94
    txn.refresh_from_db()
    assert (txn.status, txn.triggered_at is not None) == ("open", True)
    market("93.9900")
    assert state(txn)[0] == "open"
    market("94.2500")

    assert state(txn)[:2] == ("completed", None)
    assert txn.filled_price == Decimal("94.2500")
    assert account(user) == (Decimal("942.50"), Decimal("0.00"))


def test_a_trailing_sell_follows_the_highest_close_and_triggers_on_the_drop(market, commits):
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, quantity=10, average_cost=Decimal("90.0000"))
    txn = submit(
        user,
        commits,
        transaction_type="SELL",
        order_type="trailing_stop",
        trail_price=Decimal("5"),
    )
    assert txn.stop_price == Decimal("95.0000")

    for close in ("104.0000", "110.0000", "106.0000"):  # the stop rises to 105, stays there
        market(close)
    txn.refresh_from_db()
    assert (txn.status, txn.stop_price) == ("open", Decimal("105.0000"))
    market("105.0000")

    assert state(txn)[:2] == ("completed", None)
    assert txn.filled_price == Decimal("105.0000")
    assert account(user) == (Decimal("1050.00"), Decimal("0.00"))


def test_a_trailing_buy_in_percent_follows_the_lowest_close(market, commits):
    user = UserFactory(balance=Decimal("2000.00"))
    txn = submit(
        user,
        commits,
        transaction_type="BUY",
        order_type="trailing_stop",
        trail_percent=Decimal("10"),
    )
    # stop 110.0000; reserves 110 x 1.05 = 115.50 per share
    assert (txn.stop_price, txn.transaction_price) == (Decimal("110.0000"), Decimal("1155.00"))

    market("80.0000")  # the stop falls to 88
    txn.refresh_from_db()
    assert (txn.status, txn.stop_price) == ("open", Decimal("88.0000"))
    market("88.0000")

    assert state(txn)[:2] == ("completed", None)
    assert account(user) == (Decimal("1120.00"), Decimal("0.00"))


# --- time in force -------------------------------------------------------------------------


def test_an_ioc_order_that_cannot_fill_now_expires_at_once_and_reserves_nothing(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))

    txn = submit(
        user,
        commits,
        transaction_type="BUY",
        order_type="limit",
        limit_price=Decimal("90"),
        time_in_force="ioc",
    )

    assert state(txn)[:2] == ("expired", "expired")
    assert txn.settled_at is not None
    assert account(user) == (Decimal("1000.00"), Decimal("0.00"))


def test_an_ioc_order_that_can_fill_now_completes(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))

    txn = submit(
        user,
        commits,
        transaction_type="BUY",
        order_type="limit",
        limit_price=Decimal("100"),
        time_in_force="ioc",
    )

    assert state(txn)[:2] == ("completed", None)
    assert account(user) == (Decimal("0.00"), Decimal("0.00"))


def test_a_day_order_expires_at_the_cut_off_and_releases_its_reservation(market, commits, settings):
    settings.MARKET_CLOSE_UTC = "21:00"
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("90")
    )
    now = timezone.now()
    cutoff = now.replace(hour=21, minute=0, second=0, microsecond=0)
    assert txn.expires_at == (cutoff if cutoff > now else cutoff + timedelta(days=1))
    assert orders_due_to_expire() == []

    Transaction.objects.filter(pk=txn.pk).update(expires_at=now - timedelta(seconds=1))
    assert orders_due_to_expire() == [user.pk]
    with commits():
        assert expire_orders_task() == 1  # hands them to settlement, which expires them

    assert state(txn)[:2] == ("expired", "expired")
    assert account(user) == (Decimal("1000.00"), Decimal("0.00"))


def test_a_gtc_order_has_no_expiry(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))

    txn = submit(
        user,
        commits,
        transaction_type="BUY",
        order_type="limit",
        limit_price=Decimal("90"),
        time_in_force="gtc",
    )

    assert (txn.time_in_force, txn.expires_at) == ("gtc", None)


# --- triggers ------------------------------------------------------------------------------


def test_a_quote_older_than_the_latest_triggers_nothing(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )

    with commits():
        quotes_ingest(
            quotes=[
                {
                    "ticker": "AAPL",
                    "open_price": Decimal("90"),
                    "close_price": Decimal("90"),
                    "high": Decimal("90"),
                    "low": Decimal("90"),
                    "volume": 1,
                    "timestamp": T0 - timedelta(days=1),
                }
            ]
        )

    assert state(txn)[0] == "open"
    assert StockData.objects.filter(orders_checked_at__isnull=True).count() == 0


def test_the_quotes_of_one_bulk_request_apply_in_timestamp_order(market, commits):
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, quantity=10, average_cost=Decimal("90.0000"))
    txn = submit(
        user, commits, transaction_type="SELL", order_type="trailing_stop", trail_price=Decimal("5")
    )
    quote = {"ticker": "AAPL", "high": Decimal("200"), "low": Decimal("1"), "volume": 1}

    # Sent out of order: at 12:02 the close is 120 (stop 115), at 12:03 it is 114.
    with commits():
        quotes_ingest(
            quotes=[
                {**quote, "open_price": Decimal(c), "close_price": Decimal(c), "timestamp": ts}
                for c, ts in (
                    ("114", T0 + timedelta(hours=3)),
                    ("120", T0 + timedelta(hours=2)),
                )
            ]
        )

    assert state(txn)[:2] == ("completed", None)
    assert txn.filled_price == Decimal("114.0000")


def test_an_open_order_does_not_block_a_later_market_order(market, commits):
    user = UserFactory(balance=Decimal("2000.00"))
    submit(user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("50"))

    later = submit(user, commits, transaction_type="BUY", transaction_volume=1)

    assert state(later)[:2] == ("completed", None)


def test_finding_triggered_orders_is_one_indexed_query(market, commits):
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    user = UserFactory(balance=Decimal("100000000.00"))
    # Many open orders that a close of 30 does not trigger, on both sides, and 30 that it does.
    rows = [
        Transaction(
            user=user,
            ticker="AAPL",
            transaction_type=side,
            transaction_volume=1,
            unit_price=Decimal(price),
            transaction_price=Decimal(price),
            status="open",
            order_type="limit",
            limit_price=Decimal(price),
            **{direction: Decimal(price)},
        )
        for side, direction, prices in (
            ("BUY", "falls_to", range(1, 2001)),  # buy limits at 1..2000: close <= limit
            ("SELL", "rises_to", range(1960, 3960)),  # sell limits at 1960..3959: close >= limit
        )
        for price in prices
    ]
    Transaction.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE transactions_transaction")
        query, params = triggered_orders(
            ticker="AAPL", close=Decimal("1970")
        ).query.sql_with_params()
        cursor.execute(f"EXPLAIN {query}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    print(plan)  # quoted in the README
    assert "Index Scan on txn_open_rises_to" in plan, plan
    assert "Index Scan on txn_open_falls_to" in plan, plan
    assert "rises_to <=" in plan and "falls_to >=" in plan
    assert "Seq Scan" not in plan
    # buys at 1970..2000 (31) and sells at 1960..1970 (11) of the 4,000
    assert triggered_orders(ticker="AAPL", close=Decimal("1970")).count() == 31 + 11


# --- cancel and replace --------------------------------------------------------------------


def test_cancelling_an_open_order_releases_its_reservation(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )

    with commits():
        services.transaction_cancel(transaction=txn)

    assert state(txn)[:2] == ("cancelled", None)
    assert account(user) == (Decimal("1000.00"), Decimal("0.00"))
    market("90.0000")
    assert state(txn)[0] == "cancelled"


def test_cancelling_a_filled_order_is_refused_and_changes_nothing(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )
    market("94.0000")

    with pytest.raises(NotPending):
        services.transaction_cancel(transaction=txn)

    assert state(txn)[0] == "completed"
    assert account(user) == (Decimal("60.00"), Decimal("0.00"))


def test_replacing_an_open_order_adjusts_its_reservation_in_place(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )
    pk, submitted = txn.pk, txn.timestamp

    with commits():
        replaced = services.transaction_replace(
            transaction=txn, changes={"limit_price": Decimal("90"), "transaction_volume": 11}
        )

    assert (replaced.pk, replaced.timestamp, replaced.replaced_at is not None) == (
        pk,
        submitted,
        True,
    )
    assert state(replaced) == ("open", None, Decimal("90.0000"), Decimal("990.00"), None)
    assert account(user) == (Decimal("1000.00"), Decimal("990.00"))
    market("92.0000")  # would have filled the old limit of 95
    assert state(replaced)[0] == "open"


def test_a_replace_beyond_the_buying_power_is_refused_and_changes_nothing(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )

    with pytest.raises(InsufficientBuyingPower):
        services.transaction_replace(transaction=txn, changes={"transaction_volume": 11})

    assert state(txn) == ("open", None, Decimal("95.0000"), Decimal("950.00"), None)
    assert txn.replaced_at is None
    assert account(user) == (Decimal("1000.00"), Decimal("950.00"))


def test_replacing_a_filled_order_is_refused(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )
    market("94.0000")

    with pytest.raises(NotOpen):
        services.transaction_replace(transaction=txn, changes={"limit_price": Decimal("80")})

    assert state(txn)[0] == "completed"


def test_a_replace_that_makes_the_order_marketable_fills_it_at_the_latest_close(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )

    with commits():
        services.transaction_replace(transaction=txn, changes={"limit_price": Decimal("100")})

    assert state(txn) == (
        "completed",
        None,
        Decimal("100.0000"),
        Decimal("1000.00"),
        Decimal("100.0000"),
    )
    assert account(user) == (Decimal("0.00"), Decimal("0.00"))


def test_a_quote_made_ready_order_replaced_before_settling_waits_for_the_next_quote(
    market, commits
):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )
    StockDataFactory(ticker="AAPL", close_price=Decimal("94"), timestamp=T0 + timedelta(days=1))
    # Ready at 94, but not settled yet: no commit hooks run here.
    services.orders_check_for_ticker(ticker="AAPL")
    txn.refresh_from_db()
    assert txn.ready_price == Decimal("94.0000")
    services.transaction_replace(transaction=txn, changes={"limit_price": Decimal("93")})

    settled = services.transactions_settle_for_user(user_id=user.pk)

    assert settled == []
    txn.refresh_from_db()
    assert (txn.status, txn.ready_price) == ("open", None)
    assert account(user) == (Decimal("1000.00"), Decimal("930.00"))


# --- found in review ---------------------------------------------------------------------


def test_a_replace_to_ioc_that_cannot_fill_releases_exactly_what_the_order_held(market, commits):
    user = UserFactory(balance=Decimal("2000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )
    assert account(user) == (Decimal("2000.00"), Decimal("950.00"))

    with commits():
        services.transaction_replace(
            transaction=txn, changes={"limit_price": Decimal("50"), "time_in_force": "ioc"}
        )

    assert state(txn)[:2] == ("expired", "expired")
    assert account(user) == (Decimal("2000.00"), Decimal("0.00"))


def test_a_day_order_reached_after_its_cut_off_expires_instead_of_filling(market, commits):
    user = UserFactory(balance=Decimal("1000.00"))
    txn = submit(
        user, commits, transaction_type="BUY", order_type="limit", limit_price=Decimal("95")
    )
    Transaction.objects.filter(pk=txn.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    market("90.0000")  # before beat's expiry task ran
    assert state(txn)[0] == "open"
    with commits():
        expire_orders_task()

    assert state(txn)[:2] == ("expired", "expired")
    assert account(user) == (Decimal("1000.00"), Decimal("0.00"))


def test_a_replace_whose_trail_reaches_zero_is_refused_and_changes_nothing(market, commits):
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, quantity=10, average_cost=Decimal("90.0000"))
    txn = submit(
        user, commits, transaction_type="SELL", order_type="trailing_stop", trail_price=Decimal("5")
    )

    with pytest.raises(TrailTooWide):
        services.transaction_replace(transaction=txn, changes={"trail_price": Decimal("100")})

    txn.refresh_from_db()
    assert (txn.trail_price, txn.stop_price, txn.replaced_at) == (
        Decimal("5.0000"),
        Decimal("95.0000"),
        None,
    )


def test_a_retry_that_loses_to_its_own_first_request_gets_the_first_order(market, commits):
    user = UserFactory(balance=Decimal("950.00"))
    order = {
        "ticker": "AAPL",
        "transaction_type": "BUY",
        "transaction_volume": 10,
        "order_type": "limit",
        "limit_price": Decimal("95"),
    }
    first, created = services.transaction_submit_once(user=user, idempotency_key="k-1", **order)
    # As a racing retry sees it: the key's row is not visible yet, the reservation is taken.
    real_find = submission._transaction_for_key
    calls = []

    def find_late(**kwargs):
        calls.append(1)
        return None if len(calls) == 1 else real_find(**kwargs)

    submission._transaction_for_key = find_late
    try:
        again, created_again = services.transaction_submit_once(
            user=user, idempotency_key="k-1", **order
        )
    finally:
        submission._transaction_for_key = real_find

    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert account(user) == (Decimal("950.00"), Decimal("950.00"))
    assert Transaction.objects.count() == 1


def test_each_settled_orders_event_carries_the_balance_that_order_left(market):
    user = UserFactory(balance=Decimal("1000.00"))
    for volume in (2, 3):
        transaction_submit(
            user=user, ticker="AAPL", transaction_type="BUY", transaction_volume=volume
        )
    services.transactions_settle_for_user(user_id=user.pk)

    recorded = Event.objects.filter(account=user).order_by("seq")
    settled = [(e.seq, e.type, e.data["balance"]) for e in recorded if e.type != "submitted"]
    assert settled == [(3, "completed", "800.00"), (4, "completed", "500.00")]
