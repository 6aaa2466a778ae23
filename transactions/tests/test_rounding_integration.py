"""Rounding never creates cash, end to end: HTTP submissions on PostgreSQL, settled by a real
Celery worker process over Redis."""

from decimal import Decimal

import pytest
import requests

from stocks.tests.factories import StockDataFactory
from transactions.models import Position, Transaction
from transactions.tests.test_integration import submit, wait_until_final
from users.tests.factories import UserFactory

pytestmark = pytest.mark.integration


def test_trades_at_a_half_cent_close_settled_by_the_worker_never_add_a_cent(
    integration, live_server
):
    user = UserFactory(balance=Decimal("100.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("42.1250"))
    token = user.auth_token.key

    with requests.Session() as session:
        prices = []
        for kind, volume in [("buy", 2), ("sell", 1), ("sell", 1)]:
            response = submit(
                session,
                live_server.url,
                token,
                ticker="ACME",
                transaction_type=kind,
                transaction_volume=volume,
            )
            assert response.status_code == 201, response.content
            prices.append(response.json()["transaction_price"])
            wait_until_final(Transaction.objects.filter(user=user))

    assert prices == ["84.25", "42.12", "42.12"]
    assert set(Transaction.objects.filter(user=user).values_list("status", flat=True)) == {
        "completed"
    }
    user.refresh_from_db()
    assert (user.balance, user.reserved) == (Decimal("99.99"), Decimal("0.00"))
    held = Position.objects.get(user=user, ticker="ACME")
    assert (held.quantity, held.average_cost, held.realized_pnl) == (
        0,
        Decimal("0.0000"),
        Decimal("-0.02"),
    )


def test_a_sub_cent_buy_settled_by_the_worker_costs_a_cent_and_fails_without_one(
    integration, live_server
):
    user = UserFactory(balance=Decimal("0.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("0.0040"))

    with requests.Session() as session:
        response = submit(
            session,
            live_server.url,
            user.auth_token.key,
            ticker="ACME",
            transaction_type="buy",
            transaction_volume=1,
        )

    assert response.status_code == 201, response.content
    assert response.json()["transaction_price"] == "0.01"
    wait_until_final(Transaction.objects.filter(user=user))
    txn = Transaction.objects.get(user=user)
    assert (txn.status, txn.failure_reason) == ("failed", "insufficient_funds")
    user.refresh_from_db()
    assert user.balance == Decimal("0.00")
    assert not Position.objects.filter(user=user).exists()
