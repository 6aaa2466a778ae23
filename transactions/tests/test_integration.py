"""End-to-end settlement on PostgreSQL and Redis with a real Celery worker process."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
import requests

from conftest import client_for
from stocks.tests.factories import StockDataFactory
from transactions.models import Position, Transaction, TransactionStatus
from transactions.tasks import settle_user_transactions_task, sweep_pending_transactions_task
from transactions.tests.factories import TransactionFactory
from users.models import User
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


def wait_for_log(worker, needles: list[str], timeout: float = SETTLE_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not all(needle in worker.log_path.read_text() for needle in needles):
        if time.monotonic() > deadline:
            pytest.fail(f"worker log lacks some of {needles}")
        time.sleep(0.1)


def submit(session: requests.Session, base_url: str, token: str, **body) -> requests.Response:
    return session.post(
        f"{base_url}/transactions/", json=body, headers={"Authorization": f"Token {token}"}
    )


def test_200_concurrent_buys_complete_exactly_as_many_as_the_cash_covers(integration, live_server):
    user = UserFactory(balance=Decimal("500.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    token = user.auth_token.key

    def buy(_):
        with requests.Session() as session:
            return submit(
                session,
                live_server.url,
                token,
                ticker="ACME",
                transaction_type="buy",
                transaction_volume=1,
            ).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(buy, range(200)))

    assert statuses == [201] * 200
    txns = Transaction.objects.filter(user=user)
    wait_until_final(txns)
    assert txns.filter(status=TransactionStatus.COMPLETED).count() == 50
    assert (
        txns.filter(status=TransactionStatus.FAILED, failure_reason="insufficient_funds").count()
        == 150
    )
    user.refresh_from_db()
    assert user.balance == Decimal("0.00")
    assert Position.objects.get(user=user, ticker="ACME").quantity == 50


def test_a_sell_submitted_right_after_a_buy_of_the_same_shares_completes(integration, live_server):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("12.5000"))
    with requests.Session() as session:
        token = user.auth_token.key
        buy = submit(
            session,
            live_server.url,
            token,
            ticker="ACME",
            transaction_type="BUY",
            transaction_volume=8,
        )
        sell = submit(
            session,
            live_server.url,
            token,
            ticker="acme",
            transaction_type="sell",
            transaction_volume=8,
        )

    assert (buy.status_code, sell.status_code) == (201, 201)
    txns = Transaction.objects.filter(user=user)
    wait_until_final(txns)
    assert list(txns.order_by("id").values_list("transaction_type", "status")) == [
        ("BUY", "completed"),
        ("SELL", "completed"),
    ]
    user.refresh_from_db()
    assert user.balance == Decimal("1000.00")
    assert Position.objects.get(user=user, ticker="ACME").quantity == 0


def test_transactions_settle_in_submission_order(integration):
    user = UserFactory(balance=Decimal("100.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    client = client_for(user)
    orders = [("sell", 5), ("buy", 10), ("sell", 4), ("buy", 1), ("buy", 5)]
    for side, volume in orders:
        response = client.post(
            "/transactions/",
            {"ticker": "ACME", "transaction_type": side, "transaction_volume": volume},
            format="json",
        )
        assert response.status_code == 201

    txns = Transaction.objects.filter(user=user).order_by("id")
    wait_until_final(txns)
    # sell 5 (nothing held) fails; buy 10 spends all cash; sell 4 returns 40; buy 1
    # leaves 30; buy 5 needs 50 and fails.
    assert [(t.status, t.failure_reason) for t in txns] == [
        ("failed", "insufficient_shares"),
        ("completed", None),
        ("completed", None),
        ("completed", None),
        ("failed", "insufficient_funds"),
    ]
    user.refresh_from_db()
    assert user.balance == Decimal("30.00")
    assert Position.objects.get(user=user, ticker="ACME").quantity == 7


def test_settlement_in_the_worker_invalidates_the_cached_account(integration):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    client = client_for(user)
    assert client.get(f"/users/{user.username}/").json()["balance"] == "1000.00"

    client.post(
        "/transactions/",
        {"ticker": "ACME", "transaction_type": "buy", "transaction_volume": 7},
        format="json",
    )
    wait_until_final(Transaction.objects.filter(user=user))

    assert client.get(f"/users/{user.username}/").json()["balance"] == "930.00"


def test_a_new_quote_is_visible_at_once_on_the_cached_reads(integration, api_client):
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    staff = UserFactory(is_staff=True)
    assert api_client.get("/stocks/ACME/").json()["close_price"] == "10.0000"
    assert [q["close_price"] for q in api_client.get("/stocks/").json()] == ["10.0000"]

    response = client_for(staff).post(
        "/stocks/",
        {
            "ticker": "acme",
            "open_price": "10",
            "close_price": "11.5",
            "high": "12",
            "low": "9.5",
            "volume": 10,
        },
        format="json",
    )

    assert response.status_code == 201
    assert api_client.get("/stocks/ACME/").json()["close_price"] == "11.5000"
    assert [q["close_price"] for q in api_client.get("/stocks/").json()] == ["11.5000"]


def test_the_sweeper_settles_transactions_whose_task_was_lost(integration):

    user = UserFactory(balance=Decimal("100.00"))
    lost = TransactionFactory(
        user=user, ticker="ACME", unit_price=Decimal("10.0000"), transaction_volume=2
    )
    Transaction.objects.filter(pk=lost.pk).update(timestamp=lost.timestamp - timedelta(minutes=1))

    sweep_pending_transactions_task.delay()

    wait_until_final(Transaction.objects.filter(pk=lost.pk))
    lost.refresh_from_db()
    assert lost.status == TransactionStatus.COMPLETED
    assert User.objects.get(pk=user.pk).balance == Decimal("80.00")


def test_a_settlement_task_delivered_five_times_applies_once(integration):

    user = UserFactory(balance=Decimal("100.00"))
    txn = TransactionFactory(
        user=user, ticker="ACME", unit_price=Decimal("10.0000"), transaction_volume=3
    )

    task_ids = [settle_user_transactions_task.delay(user.pk).id for _ in range(5)]

    wait_for_log(integration, [f"[{task_id}] succeeded" for task_id in task_ids])
    assert User.objects.get(pk=user.pk).balance == Decimal("70.00")
    assert Position.objects.get(user=user, ticker="ACME").quantity == 3
    assert (
        integration.log_path.read_text().count(f"transaction_settled transaction_id={txn.pk} ") == 1
    )


def test_20_racing_requests_with_one_idempotency_key_create_one_transaction(
    integration, live_server
):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    body = {"ticker": "ACME", "transaction_type": "buy", "transaction_volume": 1}
    headers = {"Authorization": f"Token {user.auth_token.key}", "Idempotency-Key": "race-1"}

    def post(_):
        with requests.Session() as session:
            return session.post(f"{live_server.url}/transactions/", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(20)))

    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert {r.json()["id"] for r in responses} == {Transaction.objects.get(user=user).pk}
    wait_until_final(Transaction.objects.filter(user=user))
    user.refresh_from_db()
    assert user.balance == Decimal("990.00")
