"""Racing transfers over HTTP on PostgreSQL: the user's row lock and the unique key decide."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests

from stocks.tests.factories import StockDataFactory
from transactions.models import Transaction, TransactionStatus, Transfer
from transactions.tests.test_integration import wait_until_final
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.integration


def race(url: str, bodies_and_headers: list[tuple[dict, dict]]) -> list[requests.Response]:
    def post(request):
        body, headers = request
        with requests.Session() as session:
            return session.post(url, json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(max_workers=len(bodies_and_headers)) as pool:
        return list(pool.map(post, bodies_and_headers))


def test_20_racing_deposits_with_one_idempotency_key_make_one_transfer(integration, live_server):
    user = UserFactory(balance=Decimal("1000.00"))
    body = {"direction": "deposit", "amount": "250.00"}
    headers = {"Authorization": f"Token {user.auth_token.key}", "Idempotency-Key": "dep-race"}

    responses = race(f"{live_server.url}/users/{user.username}/transfers/", [(body, headers)] * 20)

    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    transfer = Transfer.objects.get(user=user)
    assert {r.json()["id"] for r in responses} == {transfer.pk}
    assert transfer.balance_after == Decimal("1250.00")
    assert User.objects.get(pk=user.pk).balance == Decimal("1250.00")


def test_20_racing_withdrawals_take_exactly_what_the_balance_covers(integration, live_server):
    user = UserFactory(balance=Decimal("1000.00"))
    body = {"direction": "withdrawal", "amount": "100.00"}
    requests_ = [
        (body, {"Authorization": f"Token {user.auth_token.key}", "Idempotency-Key": f"wd-{n}"})
        for n in range(20)
    ]

    responses = race(f"{live_server.url}/users/{user.username}/transfers/", requests_)

    assert sorted(r.status_code for r in responses) == [201] * 10 + [409] * 10
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {
        "insufficient_buying_power"
    }
    assert User.objects.get(pk=user.pk).balance == Decimal("0.00")
    # Each withdrawal saw the balance the one before it left: 900.00, 800.00, ..., 0.00.
    assert sorted(Transfer.objects.filter(user=user).values_list("balance_after", flat=True)) == [
        Decimal(100 * n) for n in range(10)
    ]


def test_withdrawals_racing_buys_settled_by_the_worker_keep_the_cash_exact(
    integration, live_server
):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    auth = {"Authorization": f"Token {user.auth_token.key}"}
    withdrawal = (f"/users/{user.username}/transfers/", {"direction": "withdrawal", "amount": "60"})
    buy = ("/transactions/", {"ticker": "ACME", "transaction_type": "buy", "transaction_volume": 5})
    plan = [withdrawal, buy] * 10

    def post(request):
        path, body = request
        with requests.Session() as session:
            return session.post(f"{live_server.url}{path}", json=body, headers=auth, timeout=30)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, plan))

    assert all(r.status_code in (201, 409) for r in responses), [r.status_code for r in responses]
    txns = Transaction.objects.filter(user=user)
    wait_until_final(txns)
    withdrawn = sum(
        (t.amount for t in Transfer.objects.filter(user=user, direction="withdrawal")), Decimal(0)
    )
    bought = sum(
        (t.transaction_price for t in txns.filter(status=TransactionStatus.COMPLETED)), Decimal(0)
    )
    balance = User.objects.get(pk=user.pk).balance
    assert balance == Decimal("1000.00") - withdrawn - bought  # invariant 1
    assert balance >= 0
    # 10 x 60 + 10 x 50 is more than the balance: something was refused, or failed.
    refused = sum(r.status_code == 409 for r in responses)
    failed = txns.filter(status=TransactionStatus.FAILED).count()
    assert refused + failed >= 1
    assert withdrawn == 60 * sum(
        r.status_code == 201
        for r, (path, _) in zip(responses, plan, strict=True)
        if "transfers" in path
    )
