"""The Django admin: every model listed, filters and search, ledgers read-only, caches kept true."""

from decimal import Decimal

import pytest

from stocks.models import StockData
from stocks.tests.factories import StockDataFactory
from transactions.tests.factories import PositionFactory, TransactionFactory
from users.models import User
from users.tests.factories import UserFactory


@pytest.fixture
def operator_client(client, db):
    operator = UserFactory(username="root-op", is_staff=True, is_superuser=True)
    client.force_login(operator)
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/users/user/",
        "/admin/users/user/?q=trader",
        "/admin/stocks/stockdata/?ticker=AAPL",
        "/admin/transactions/transaction/?status__exact=pending",
        "/admin/transactions/transaction/?transaction_type__exact=BUY&ticker=AAPL",
        "/admin/transactions/transaction/?q=AAPL",
        "/admin/transactions/position/?ticker=AAPL",
    ],
)
def test_every_admin_page_renders(operator_client, url):
    StockDataFactory(ticker="AAPL")
    TransactionFactory(ticker="AAPL")
    PositionFactory(ticker="AAPL")

    assert operator_client.get(url).status_code == 200


def test_transaction_filters_select_exactly_the_matching_rows(operator_client):
    TransactionFactory(ticker="AAPL", status="pending")
    TransactionFactory(ticker="AAPL", status="completed")
    TransactionFactory(ticker="MSFT", status="pending")

    response = operator_client.get(
        "/admin/transactions/transaction/?status__exact=pending&ticker=AAPL"
    )

    assert response.context["cl"].result_count == 1


def test_transactions_and_positions_cannot_be_added_or_changed(operator_client):
    txn = TransactionFactory()
    position = PositionFactory()

    assert operator_client.get("/admin/transactions/transaction/add/").status_code == 403
    assert operator_client.get("/admin/transactions/position/add/").status_code == 403
    response = operator_client.post(
        f"/admin/transactions/transaction/{txn.pk}/change/", {"status": "completed"}
    )
    assert response.status_code == 403
    txn.refresh_from_db()
    assert txn.status == "pending"
    assert (
        operator_client.post(
            f"/admin/transactions/position/{position.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )


def test_the_balance_is_read_only_once_a_user_exists(operator_client):
    user = UserFactory(balance=Decimal("100.00"))

    page = operator_client.get(f"/admin/users/user/{user.pk}/change/")

    assert "balance" not in page.context["adminform"].form.fields
    assert "balance" in page.context["adminform"].readonly_fields


def test_editing_a_quote_in_the_admin_refreshes_the_cached_latest_quote(
    operator_client, api_client, django_capture_on_commit_callbacks
):
    quote = StockDataFactory(ticker="AAPL", close_price=Decimal("10.0000"))
    assert api_client.get("/stocks/AAPL/").json()["close_price"] == "10.0000"
    form = {
        "ticker": "aapl",
        "open_price": "10",
        "close_price": "12.5",
        "high": "13",
        "low": "9",
        "volume": "5",
        "timestamp_0": quote.timestamp.strftime("%Y-%m-%d"),
        "timestamp_1": quote.timestamp.strftime("%H:%M:%S"),
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = operator_client.post(f"/admin/stocks/stockdata/{quote.pk}/change/", form)

    assert response.status_code == 302
    assert StockData.objects.get(pk=quote.pk).ticker == "AAPL"
    assert api_client.get("/stocks/AAPL/").json()["close_price"] == "12.5000"


def test_adding_a_user_in_the_admin_sets_the_opening_balance(operator_client):
    response = operator_client.post(
        "/admin/users/user/add/",
        {
            "username": "desk",
            "password1": "a-long-unguessable-password",
            "password2": "a-long-unguessable-password",
            "usable_password": "true",
            "balance": "2500.00",
        },
    )

    assert response.status_code == 302
    assert User.objects.get(username="desk").balance == Decimal("2500.00")


def test_open_orders_filter_by_type_status_and_ticker(operator_client):
    TransactionFactory(ticker="AAPL", status="open", order_type="limit", limit_price="90")
    TransactionFactory(ticker="AAPL", status="open", order_type="stop", stop_price="90")
    TransactionFactory(ticker="MSFT", status="open", order_type="limit", limit_price="90")
    TransactionFactory(ticker="AAPL", status="pending")

    response = operator_client.get(
        "/admin/transactions/transaction/?status__exact=open&order_type__exact=limit&ticker=AAPL"
    )

    assert response.context["cl"].result_count == 1


def test_the_admin_action_cancels_open_orders_through_the_service(operator_client):
    buyer = UserFactory(balance=Decimal("1000.00"), reserved=Decimal("900.00"))
    open_buy = TransactionFactory(
        user=buyer,
        status="open",
        order_type="limit",
        limit_price="90",
        unit_price="90",
        transaction_volume=10,
    )
    filled = TransactionFactory(user=buyer, status="completed")

    response = operator_client.post(
        "/admin/transactions/transaction/",
        {"action": "cancel_open_orders", "_selected_action": [open_buy.pk, filled.pk]},
    )

    assert response.status_code == 302
    open_buy.refresh_from_db()
    filled.refresh_from_db()
    buyer.refresh_from_db()
    assert (open_buy.status, filled.status) == ("cancelled", "completed")
    assert (buyer.balance, buyer.reserved) == (Decimal("1000.00"), Decimal("0.00"))
