"""Rounding never favours the account holder: cash paid or reserved is rounded up to the cent,
cash received down, so no trade at one price creates cash and a buy costs at least 0.01."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from stocks.services import quotes_ingest
from stocks.tests.factories import StockDataFactory
from transactions.models import Position, Transaction
from transactions.selectors import portfolio_value
from transactions.services import transaction_submit, transactions_settle_for_user
from transactions.tests.factories import PositionFactory
from users.models import User

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 6, 15, 0, tzinfo=UTC)


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Run what a real commit would: the eager check-orders and settlement tasks."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def quote_at(close: str, minutes: int = 0) -> None:
    price = Decimal(close)
    quotes_ingest(
        quotes=[
            {
                "ticker": "AAPL",
                "open_price": price,
                "close_price": price,
                "high": price,
                "low": price,
                "volume": 100,
                "timestamp": T0 + timedelta(minutes=minutes),
            }
        ]
    )


def trade(client, kind: str, volume: int, **extra):
    body = {"ticker": "AAPL", "transaction_type": kind, "transaction_volume": volume, **extra}
    return client.post("/transactions/", body, format="json")


def set_balance(user, balance: str) -> None:
    # An UPDATE, as the services write money: a model save of `balance` is refused.
    User.objects.filter(pk=user.pk).update(balance=Decimal(balance))
    user.refresh_from_db()


def balance_of(user) -> Decimal:
    user.refresh_from_db()
    return user.balance


def test_buying_two_at_a_half_cent_close_and_selling_them_one_by_one_loses_a_cent(
    user_client, user, commits
):
    """The measured bug: 84.25 paid, 42.13 + 42.13 received, 100.00 became 100.01."""
    set_balance(user, "100.00")
    StockDataFactory(ticker="AAPL", close_price=Decimal("42.1250"))

    with commits():
        buy = trade(user_client, "buy", 2)
    with commits():
        first = trade(user_client, "sell", 1)
    with commits():
        second = trade(user_client, "sell", 1)

    assert [r.json()["transaction_price"] for r in (buy, first, second)] == [
        "84.25",
        "42.12",
        "42.12",
    ]
    assert (
        list(Transaction.objects.order_by("id").values_list("status", flat=True))
        == ["completed"] * 3
    )
    assert balance_of(user) == Decimal("99.99")
    held = Position.objects.get(user=user, ticker="AAPL")
    assert (held.quantity, held.average_cost) == (0, Decimal("0.0000"))
    # 84.24 received for 84.25 paid. Each share sold is costed at 42.125 up, 42.13: the
    # book may show a cent per sell less than was made, never more.
    assert held.realized_pnl == Decimal("-0.02")


def test_a_market_buy_at_a_sub_cent_close_costs_a_cent_and_fails_without_one(
    user_client, user, commits
):
    set_balance(user, "0.00")
    StockDataFactory(ticker="AAPL", close_price=Decimal("0.0040"))

    with commits():
        response = trade(user_client, "buy", 1)

    assert response.status_code == 201, response.content
    assert (response.json()["unit_price"], response.json()["transaction_price"]) == (
        "0.0040",
        "0.01",
    )
    txn = Transaction.objects.get()
    assert (txn.status, txn.failure_reason, txn.transaction_price) == (
        "failed",
        "insufficient_funds",
        Decimal("0.01"),
    )
    assert balance_of(user) == Decimal("0.00")
    assert not Position.objects.filter(user=user).exists()


def test_a_market_buy_at_a_sub_cent_close_completes_for_a_cent(user_client, user, commits):
    set_balance(user, "0.01")
    StockDataFactory(ticker="AAPL", close_price=Decimal("0.0040"))

    with commits():
        trade(user_client, "buy", 1)

    assert Transaction.objects.get().status == "completed"
    assert balance_of(user) == Decimal("0.00")
    held = Position.objects.get(user=user, ticker="AAPL")
    # The cost basis is the cent paid, not 0.0040: a later sell cannot book a phantom gain.
    assert (held.quantity, held.average_cost) == (1, Decimal("0.0100"))


def test_a_limit_buy_at_a_sub_cent_price_reserves_a_cent_so_a_user_without_one_cannot_open_it(
    user_client, user
):
    set_balance(user, "0.00")
    StockDataFactory(ticker="AAPL", close_price=Decimal("0.0050"))

    response = trade(user_client, "buy", 1, order_type="limit", limit_price="0.0040")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "This needs 0.01 of buying power; 0.00 is available.",
        "code": "insufficient_buying_power",
    }
    assert Transaction.objects.count() == 0


def test_a_cent_of_buying_power_opens_one_sub_cent_limit_buy_and_no_more(user_client, user):
    set_balance(user, "0.01")
    StockDataFactory(ticker="AAPL", close_price=Decimal("0.0050"))

    first = trade(user_client, "buy", 1, order_type="limit", limit_price="0.0040")
    second = trade(user_client, "buy", 1, order_type="limit", limit_price="0.0040")

    assert first.status_code == 201, first.content
    assert first.json()["transaction_price"] == "0.01"
    assert second.status_code == 409
    assert second.json()["code"] == "insufficient_buying_power"
    user.refresh_from_db()
    assert (user.balance, user.reserved) == (Decimal("0.01"), Decimal("0.01"))


def test_a_stop_buy_reserves_its_collar_rounded_up(user):
    StockDataFactory(ticker="AAPL", close_price=Decimal("10.0000"))

    txn = transaction_submit(
        user=user,
        ticker="AAPL",
        transaction_type="BUY",
        transaction_volume=1,
        order_type="stop",
        stop_price=Decimal("10.0001"),
    )

    # 10.0001 x 1.05 = 10.500105: 10.5002 per share (half up would reserve 10.5001, 10.50).
    assert (txn.unit_price, txn.transaction_price) == (Decimal("10.5002"), Decimal("10.51"))
    user.refresh_from_db()
    assert user.reserved == Decimal("10.51")


def test_an_open_sell_filled_at_a_half_cent_close_receives_the_cent_below(user, commits):
    set_balance(user, "0.00")
    PositionFactory(user=user, quantity=1, average_cost=Decimal("40.0000"))
    quote_at("40.0000")
    with commits():
        txn = transaction_submit(
            user=user,
            ticker="AAPL",
            transaction_type="SELL",
            transaction_volume=1,
            order_type="limit",
            limit_price=Decimal("42.1250"),
            time_in_force="gtc",
        )
    # What it asks is what it would receive at its limit: rounded down.
    assert txn.transaction_price == Decimal("42.12")

    with commits():
        quote_at("42.1250", minutes=1)

    txn.refresh_from_db()
    assert (txn.status, txn.filled_price, txn.transaction_price) == (
        "completed",
        Decimal("42.1250"),
        Decimal("42.12"),
    )
    assert balance_of(user) == Decimal("42.12")
    assert Position.objects.get(user=user).realized_pnl == Decimal("2.12")


def test_an_open_buy_filled_at_a_half_cent_close_pays_the_cent_above(user, commits):
    set_balance(user, "100.00")
    quote_at("50.0000")
    with commits():
        txn = transaction_submit(
            user=user,
            ticker="AAPL",
            transaction_type="BUY",
            transaction_volume=1,
            order_type="limit",
            limit_price=Decimal("42.1250"),
            time_in_force="gtc",
        )
    assert txn.transaction_price == Decimal("42.13")

    with commits():
        quote_at("42.1250", minutes=1)

    txn.refresh_from_db()
    assert (txn.status, txn.transaction_price) == ("completed", Decimal("42.13"))
    user.refresh_from_db()
    assert (user.balance, user.reserved) == (Decimal("57.87"), Decimal("0.00"))


def test_a_sell_books_its_cost_rounded_up_so_realized_pnl_never_shows_a_gain_not_made(user):
    set_balance(user, "10.00")
    StockDataFactory(ticker="AAPL", close_price=Decimal("0.3333"))
    for kind in ("BUY", "SELL"):
        transaction_submit(user=user, ticker="AAPL", transaction_type=kind, transaction_volume=3)
        transactions_settle_for_user(user_id=user.pk)

    # Paid 1.00 (0.9999 up), received 0.99 (0.9999 down): 0.01 lost. The average cost is
    # 1.00 / 3 = 0.3333... up to 0.3334, and the shares sold cost 1.0002 up to 1.01.
    assert balance_of(user) == Decimal("9.99")
    held = Position.objects.get(user=user)
    assert (held.quantity, held.average_cost, held.realized_pnl) == (
        0,
        Decimal("0.0000"),
        Decimal("-0.02"),
    )


def test_a_portfolio_values_positions_at_what_selling_them_would_pay():
    position = PositionFactory.build(
        ticker="AAPL", quantity=3, reserved=0, average_cost=Decimal("0.3334")
    )

    value = portfolio_value(
        cash=Decimal("1.00"), positions=[position], closes={"AAPL": Decimal("0.3333")}
    )

    row = value["positions"][0]
    # market value 0.9999 down to 0.99; cost 1.0002 up to 1.01.
    assert (row["market_value"], row["unrealized_pnl"], value["equity"]) == (
        Decimal("0.99"),
        Decimal("-0.02"),
        Decimal("1.99"),
    )
