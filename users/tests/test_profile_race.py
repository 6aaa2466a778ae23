"""Operators' profile saves racing settlement in a real worker, on PostgreSQL: cash is conserved
(DESIGN invariant 1) because no profile save writes the balance it read."""

import random
import threading
import time
from decimal import Decimal

import pytest
import requests
from django.db import close_old_connections, connection
from django.test import Client

from stocks.tests.factories import StockDataFactory
from transactions.models import Transaction, TransactionStatus, TransactionType, Transfer
from transactions.tests.test_integration import wait_until_final
from users.models import User
from users.services import user_update
from users.tests.factories import UserFactory

pytestmark = pytest.mark.integration

OPENING = Decimal("1000.00")
ROUNDS = 20  # each: a deposit, two buys and a sell, submitted over HTTP


def cash_expected(user: User) -> Decimal:
    """Invariant 1: opening + deposits - withdrawals - completed buys + completed sells."""

    def total(rows, field: str) -> Decimal:
        return sum(rows.values_list(field, flat=True), Decimal(0))

    transfers = Transfer.objects.filter(user=user)
    completed = Transaction.objects.filter(user=user, status=TransactionStatus.COMPLETED)
    return (
        OPENING
        + total(transfers.filter(direction="deposit"), "amount")
        - total(transfers.filter(direction="withdrawal"), "amount")
        - total(completed.filter(transaction_type=TransactionType.BUY), "transaction_price")
        + total(completed.filter(transaction_type=TransactionType.SELL), "transaction_price")
    )


class ProfileSaves(threading.Thread):
    """Saves email changes until stopped, each through `save`, counting the saves."""

    def __init__(self, save):
        super().__init__(daemon=True)
        self.save, self.saves, self.error = save, 0, None
        self.stop = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                self.save(self.saves)
                self.saves += 1
        except Exception as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            close_old_connections()
            connection.close()


def test_profile_saves_racing_settlement_in_the_worker_conserve_cash(integration, live_server):
    user = UserFactory(balance=OPENING)
    operator = UserFactory(username="desk-op", is_staff=True, is_superuser=True)
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    rng = random.Random(13)

    def through_the_service(n):
        # As an operator's form would: the row read first, saved a moment later, while the
        # worker settles buys and sells that move the balance in between.
        loaded = User.objects.get(pk=user.pk)
        time.sleep(rng.uniform(0.005, 0.03))
        loaded.email = f"service-{n}@example.com"
        user_update(user=loaded)

    admin = Client()
    admin.force_login(operator)
    form = {"username": user.username, "first_name": "", "last_name": "", "is_active": "on"}

    def through_the_admin(n):
        response = admin.post(
            f"/admin/users/user/{user.pk}/change/", {**form, "email": f"admin-{n}@example.com"}
        )
        assert response.status_code == 302, response.content

    savers = [ProfileSaves(through_the_service), ProfileSaves(through_the_admin)]
    for saver in savers:
        saver.start()
    auth = {"Authorization": f"Token {user.auth_token.key}"}
    statuses = []
    with requests.Session() as session:
        for _ in range(ROUNDS):
            for path, body in (
                (f"/users/{user.username}/transfers/", {"direction": "deposit", "amount": "7.00"}),
                (
                    "/transactions/",
                    {"ticker": "ACME", "transaction_type": "buy", "transaction_volume": 3},
                ),
                (
                    "/transactions/",
                    {"ticker": "ACME", "transaction_type": "buy", "transaction_volume": 2},
                ),
                (
                    "/transactions/",
                    {"ticker": "ACME", "transaction_type": "sell", "transaction_volume": 4},
                ),
            ):
                response = session.post(f"{live_server.url}{path}", json=body, headers=auth)
                statuses.append(response.status_code)
                time.sleep(rng.uniform(0, 0.02))
        wait_until_final(Transaction.objects.filter(user=user))
    for saver in savers:
        saver.stop.set()
        saver.join(timeout=30)

    assert [saver.error for saver in savers] == [None, None]
    assert all(saver.saves >= 5 for saver in savers), [saver.saves for saver in savers]
    assert statuses == [201] * (4 * ROUNDS)
    completed = Transaction.objects.filter(user=user, status=TransactionStatus.COMPLETED)
    assert completed.count() >= 2 * ROUNDS  # every buy is covered; sells need the shares
    balance = User.objects.get(pk=user.pk).balance
    assert balance == cash_expected(user)
    assert balance >= 0
