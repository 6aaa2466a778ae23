"""End-to-end settlement on PostgreSQL and Redis with a real Celery worker process."""

import time
from decimal import Decimal

import pytest

from conftest import client_for
from stocks.tests.factories import StockDataFactory
from transactions.models import Position, Transaction, TransactionStatus
from users.tests.factories import UserFactory

pytestmark = pytest.mark.integration
SETTLE_TIMEOUT = 60


def wait_until_final(queryset, timeout: float = SETTLE_TIMEOUT):
    deadline = time.monotonic() + timeout
    while queryset.filter(status=TransactionStatus.PENDING).exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{queryset.filter(status='pending').count()} transactions still pending")
        time.sleep(0.1)


def test_a_buy_settles_in_the_worker_process(integration):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("123.4500"))

    response = client_for(user).post(
        "/transactions/",
        {"ticker": "aapl", "transaction_type": "buy", "transaction_volume": 3},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending"
    wait_until_final(Transaction.objects.filter(user=user))
    txn = Transaction.objects.get(user=user)
    assert txn.status == TransactionStatus.COMPLETED
    assert txn.transaction_price == Decimal("370.35")
    user.refresh_from_db()
    assert user.balance == Decimal("629.65")
    assert Position.objects.get(user=user, ticker="AAPL").quantity == 3
    assert f"transaction_settled transaction_id={txn.pk} " in integration.log_path.read_text()
