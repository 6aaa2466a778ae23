"""Day orders end at their cut-off in every path: a replace (PATCH) or a settlement that comes
after `expires_at` expires the order instead of changing or filling it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from stocks.tests.factories import StockDataFactory
from transactions import services
from transactions.errors import NotOpen
from transactions.models import Transaction
from transactions.services import lifecycle, transaction_submit, transactions_settle_for_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Run what a real commit would: the eager check-orders and settlement tasks."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def day_buy(user, commits):
    """An open day limit buy of 10 AAPL at 95 (the close is 100) whose cut-off has passed:
    the expiry sweep has not run yet."""
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    with commits():
        txn = transaction_submit(
            user=user,
            ticker="AAPL",
            transaction_type="BUY",
            transaction_volume=10,
            order_type="limit",
            limit_price=Decimal("95"),
        )
    assert (txn.status, txn.time_in_force) == ("open", "day")
    past = timezone.now() - timedelta(seconds=1)
    Transaction.objects.filter(pk=txn.pk).update(expires_at=past)
    return txn


def account(user):
    user.refresh_from_db()
    return user.balance, user.reserved


def state(txn):
    txn.refresh_from_db()
    return txn.status, txn.failure_reason, txn.time_in_force, txn.filled_price


EXPIRED_409 = {
    "detail": "Transaction {pk} is already expired; only open orders can be replaced.",
    "code": "not_open",
}


def expired_409(txn) -> dict:
    return {**EXPIRED_409, "detail": EXPIRED_409["detail"].format(pk=txn.pk)}


def test_a_patch_to_gtc_after_the_cut_off_expires_the_day_order_instead(
    user_client, user, day_buy, commits
):
    with commits():
        response = user_client.patch(
            f"/transactions/{user.pk}/{day_buy.pk}/", {"time_in_force": "gtc"}, format="json"
        )

    assert response.status_code == 409
    assert response.json() == expired_409(day_buy)
    assert state(day_buy) == ("expired", "expired", "day", None)
    assert day_buy.settled_at is not None
    assert day_buy.replaced_at is None
    assert account(user) == (Decimal("10000.00"), Decimal("0.00"))


def test_a_patch_making_a_day_order_marketable_after_the_cut_off_does_not_fill_it(
    user_client, user, day_buy, commits
):
    with commits():
        response = user_client.patch(
            f"/transactions/{user.pk}/{day_buy.pk}/", {"limit_price": "100"}, format="json"
        )

    assert response.status_code == 409
    assert response.json() == expired_409(day_buy)
    assert state(day_buy) == ("expired", "expired", "day", None)
    day_buy.refresh_from_db()
    assert day_buy.limit_price == Decimal("95.0000")  # the replace changed nothing
    assert account(user) == (Decimal("10000.00"), Decimal("0.00"))
    assert not user.positions.exists()


def test_a_patch_exactly_at_the_cut_off_expires_the_order(user, day_buy, monkeypatch):
    cutoff = timezone.now().replace(microsecond=0) + timedelta(seconds=5)
    Transaction.objects.filter(pk=day_buy.pk).update(expires_at=cutoff)
    monkeypatch.setattr(lifecycle.timezone, "now", lambda: cutoff)

    with pytest.raises(NotOpen):
        services.transaction_replace(transaction=day_buy, changes={"transaction_volume": 5})

    assert state(day_buy)[:2] == ("expired", "expired")
    assert account(user) == (Decimal("10000.00"), Decimal("0.00"))


def test_a_ready_day_order_settled_after_its_cut_off_expires_instead_of_filling(user, commits):
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    with commits():
        txn = transaction_submit(
            user=user,
            ticker="AAPL",
            transaction_type="BUY",
            transaction_volume=10,
            order_type="limit",
            limit_price=Decimal("95"),
        )
    StockDataFactory(ticker="AAPL", close_price=Decimal("94.0000"))
    services.orders_check_for_ticker(ticker="AAPL")  # ready at 94; settlement not run yet
    txn.refresh_from_db()
    assert txn.ready_price == Decimal("94.0000")
    # The cut-off passes before the settlement task runs.
    Transaction.objects.filter(pk=txn.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    settled = transactions_settle_for_user(user_id=user.pk)

    assert [t.pk for t in settled] == [txn.pk]
    assert state(txn) == ("expired", "expired", "day", None)
    assert account(user) == (Decimal("10000.00"), Decimal("0.00"))
    assert not user.positions.exists()


def test_a_patch_before_the_cut_off_still_replaces_the_day_order(user_client, user, commits):
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    with commits():
        txn = transaction_submit(
            user=user,
            ticker="AAPL",
            transaction_type="BUY",
            transaction_volume=10,
            order_type="limit",
            limit_price=Decimal("95"),
        )
    soon = timezone.now() + timedelta(minutes=1)
    Transaction.objects.filter(pk=txn.pk).update(expires_at=soon)

    with commits():
        response = user_client.patch(
            f"/transactions/{user.pk}/{txn.pk}/", {"time_in_force": "gtc"}, format="json"
        )

    assert response.status_code == 200, response.content
    assert (response.json()["time_in_force"], response.json()["expires_at"]) == ("gtc", None)
    assert account(user) == (Decimal("10000.00"), Decimal("950.00"))
