"""Conditional orders on PostgreSQL and Redis with a real Celery worker: racing reservations,
fills triggered by quotes over HTTP, cancels racing fills, and a trigger while Redis is down."""

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from django.db.models import Sum

from stockflow.testing import wait_for
from stocks.tests.factories import StockDataFactory
from transactions.models import Position, Transaction
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.integration
TIMEOUT = 60


def post(base_url: str, token: str, path: str, body: dict) -> requests.Response:
    with requests.Session() as session:
        return session.post(
            f"{base_url}{path}", json=body, headers={"Authorization": f"Token {token}"}, timeout=30
        )


def quote_body(close: str) -> dict:
    """A quote stamped now: newer than any the factories made, so it is the latest."""
    return {
        "ticker": "ACME",
        "open_price": close,
        "close_price": close,
        "high": close,
        "low": close,
        "volume": 1,
    }


def wait_until_no_open_or_pending(user) -> None:
    wait_for(
        lambda: not Transaction.objects.filter(user=user, status__in=["open", "pending"]).exists(),
        TIMEOUT,
        lambda: f"{Transaction.objects.filter(user=user, status='open').count()} still open",
    )


def assert_reservations_are_exact(user) -> None:
    """Invariant 6: reserved cash equals the sum over the user's open buys (and shares)."""
    user.refresh_from_db()
    open_buys = Transaction.objects.filter(user=user, status="open", transaction_type="BUY")
    assert user.reserved == (open_buys.aggregate(s=Sum("transaction_price"))["s"] or 0)
    assert 0 <= user.reserved <= user.balance
    for position in Position.objects.filter(user=user):
        open_sells = Transaction.objects.filter(
            user=user, status="open", transaction_type="SELL", ticker=position.ticker
        )
        assert position.reserved == (open_sells.aggregate(s=Sum("transaction_volume"))["s"] or 0)


def test_200_racing_limit_buys_with_buying_power_for_exactly_50(integration, live_server):
    user = UserFactory(balance=Decimal("500.00"))  # 50 x (10.00 x 1 share)
    staff = UserFactory(is_staff=True, username="feed-op")
    StockDataFactory(ticker="ACME", close_price=Decimal("12.0000"))
    body = {
        "ticker": "ACME",
        "transaction_type": "buy",
        "transaction_volume": 1,
        "order_type": "limit",
        "limit_price": "10.00",
        "time_in_force": "gtc",
    }

    with ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(
            pool.map(
                lambda _: post(live_server.url, user.auth_token.key, "/transactions/", body),
                range(200),
            )
        )

    assert sorted(r.status_code for r in responses) == [201] * 50 + [409] * 150
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {
        "insufficient_buying_power"
    }
    user.refresh_from_db()
    assert (user.balance, user.reserved, user.buying_power) == (
        Decimal("500.00"),
        Decimal("500.00"),
        Decimal("0.00"),
    )
    assert Transaction.objects.filter(user=user, status="open").count() == 50
    assert_reservations_are_exact(user)

    # One quote at 9.00 fills all fifty in the worker, at that close.
    stored = post(live_server.url, staff.auth_token.key, "/stocks/", quote_body("9.00"))
    assert stored.status_code == 201, stored.content
    wait_until_no_open_or_pending(user)

    user.refresh_from_db()
    assert (user.balance, user.reserved) == (Decimal("50.00"), Decimal("0.00"))
    assert Position.objects.get(user=user, ticker="ACME").quantity == 50
    assert set(Transaction.objects.filter(user=user).values_list("status", "filled_price")) == {
        ("completed", Decimal("9.0000"))
    }


def test_a_cancel_racing_a_fill_has_exactly_one_winner_per_order(integration, live_server):
    user = UserFactory(balance=Decimal("10000.00"))
    staff = UserFactory(is_staff=True, username="feed-op")
    StockDataFactory(ticker="ACME", close_price=Decimal("12.0000"))
    token = user.auth_token.key
    body = {
        "ticker": "ACME",
        "transaction_type": "buy",
        "transaction_volume": 2,
        "order_type": "limit",
        "limit_price": "10.00",
    }
    ids = [post(live_server.url, token, "/transactions/", body).json()["id"] for _ in range(40)]

    def cancel(txn_id: int) -> tuple[int, int]:
        with requests.Session() as session:
            response = session.delete(
                f"{live_server.url}/transactions/{user.pk}/{txn_id}/",
                headers={"Authorization": f"Token {token}"},
                timeout=30,
            )
        return txn_id, response.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        fill = pool.submit(
            post, live_server.url, staff.auth_token.key, "/stocks/", quote_body("9.50")
        )
        time.sleep(0.05)
        outcomes = dict(pool.map(cancel, ids))
    assert fill.result().status_code == 201
    wait_until_no_open_or_pending(user)

    final = dict(Transaction.objects.filter(user=user).values_list("id", "status"))
    assert set(outcomes.values()) <= {200, 409}
    assert {i for i, s in outcomes.items() if s == 200} == {
        i for i, s in final.items() if s == "cancelled"
    }
    assert {i for i, s in outcomes.items() if s == 409} == {
        i for i, s in final.items() if s == "completed"
    }
    filled = sum(1 for s in final.values() if s == "completed")
    user.refresh_from_db()
    assert (user.balance, user.reserved) == (
        Decimal("10000.00") - filled * Decimal("19.00"),
        Decimal("0.00"),
    )
    held = Position.objects.filter(user=user, ticker="ACME").values_list("quantity", flat=True)
    assert list(held) == ([2 * filled] if filled else [])


def test_a_stop_sell_triggered_over_http_fills_in_the_worker(integration, live_server):
    user = UserFactory(balance=Decimal("0.00"))
    staff = UserFactory(is_staff=True, username="feed-op")
    StockDataFactory(ticker="ACME", close_price=Decimal("12.0000"))
    Position.objects.create(user=user, ticker="ACME", quantity=5, average_cost=Decimal("8"))
    order = post(
        live_server.url,
        user.auth_token.key,
        "/transactions/",
        {
            "ticker": "ACME",
            "transaction_type": "sell",
            "transaction_volume": 5,
            "order_type": "stop",
            "stop_price": "11",
        },
    )
    assert (order.status_code, order.json()["status"]) == (201, "open"), order.content

    post(live_server.url, staff.auth_token.key, "/stocks/", quote_body("10.80"))
    wait_until_no_open_or_pending(user)

    txn = Transaction.objects.get(pk=order.json()["id"])
    assert (txn.status, txn.filled_price, txn.transaction_price) == (
        "completed",
        Decimal("10.8000"),
        Decimal("54.00"),
    )
    assert txn.triggered_at is not None
    user = User.objects.get(pk=user.pk)
    assert (user.balance, user.reserved) == (Decimal("54.00"), Decimal("0.00"))
    position = Position.objects.get(user=user, ticker="ACME")
    assert (position.quantity, position.reserved, position.realized_pnl) == (
        0,
        0,
        Decimal("14.00"),
    )
