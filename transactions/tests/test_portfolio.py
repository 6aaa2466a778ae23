"""HTTP tests for /users/{username}/portfolio/: cash, reservations and positions valued."""

from decimal import Decimal

import pytest

from stocks.tests.factories import StockDataFactory
from transactions.tests.factories import PositionFactory
from users.tests.factories import UserFactory

NOT_AUTHENTICATED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
NOT_YOURS = {"detail": "You may only access your own account.", "code": "permission_denied"}


# --- GET /users/{username}/portfolio/ ----------------------------------------------------


@pytest.mark.django_db
def test_a_new_user_has_a_portfolio_of_cash_only(user_client, user):
    response = user_client.get(f"/users/{user.username}/portfolio/")

    assert response.status_code == 200
    assert response.json() == {
        "username": user.username,
        "cash": "10000.00",
        "balance": "10000.00",
        "reserved": "0.00",
        "buying_power": "10000.00",
        "positions": [],
        "equity": "10000.00",
        "realized_pnl": "0.00",
    }


@pytest.mark.django_db
def test_the_portfolio_values_positions_bought_over_the_api_at_the_latest_close(
    user_client, user, django_capture_on_commit_callbacks
):
    StockDataFactory(ticker="MSFT", close_price=Decimal("300.2500"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("150.0000"))
    with django_capture_on_commit_callbacks(execute=True):
        for ticker, volume in [("AAPL", 10), ("msft", 3), ("AAPL", 5)]:
            response = user_client.post(
                "/transactions/",
                {"ticker": ticker, "transaction_type": "buy", "transaction_volume": volume},
            )
            assert response.status_code == 201, response.content
    StockDataFactory(ticker="AAPL", close_price=Decimal("155.1250"))

    response = user_client.get(f"/users/{user.username}/portfolio/")

    assert response.status_code == 200
    # cash: 10000.00 - 1500.00 - 900.75 - 750.00; AAPL 15 x 155.1250 = 2326.875, valued at
    # what selling it would pay: 2326.87 (down).
    assert response.json() == {
        "username": user.username,
        "cash": "6849.25",
        "balance": "6849.25",
        "reserved": "0.00",
        "buying_power": "6849.25",
        "positions": [
            {
                "ticker": "AAPL",
                "quantity": 15,
                "reserved": 0,
                "available": 15,
                "average_cost": "150.0000",
                "last_price": "155.1250",
                "market_value": "2326.87",
                "unrealized_pnl": "76.87",
                "realized_pnl": "0.00",
            },
            {
                "ticker": "MSFT",
                "quantity": 3,
                "reserved": 0,
                "available": 3,
                "average_cost": "300.2500",
                "last_price": "300.2500",
                "market_value": "900.75",
                "unrealized_pnl": "0.00",
                "realized_pnl": "0.00",
            },
        ],
        "equity": "10076.87",
        "realized_pnl": "0.00",
    }


@pytest.mark.django_db
def test_the_portfolio_takes_three_queries_however_many_positions(
    user_client, user, django_assert_num_queries
):
    for ticker in ("AAPL", "IBM", "MSFT", "NVDA"):
        StockDataFactory(ticker=ticker)
        PositionFactory(user=user, ticker=ticker)

    # token (with the caller's own account), positions, latest closes
    with django_assert_num_queries(3):
        response = user_client.get(f"/users/{user.username}/portfolio/")

    assert len(response.json()["positions"]) == 4


@pytest.mark.django_db
def test_the_portfolio_leaves_out_positions_sold_to_zero(user_client, user, quote):
    PositionFactory(user=user, ticker="AAPL", quantity=0, average_cost=Decimal("0"))

    response = user_client.get(f"/users/{user.username}/portfolio/")

    assert response.json()["positions"] == []


@pytest.mark.django_db
def test_a_user_cannot_read_another_portfolio(user_client):
    other = UserFactory()

    response = user_client.get(f"/users/{other.username}/portfolio/")

    assert response.status_code == 403
    assert response.json() == NOT_YOURS


@pytest.mark.django_db
def test_staff_read_any_portfolio(staff_client, user, quote):
    PositionFactory(user=user, ticker="AAPL", quantity=2, average_cost=Decimal("140.0000"))

    response = staff_client.get(f"/users/{user.username}/portfolio/")

    assert response.status_code == 200
    assert response.json() == {
        "username": user.username,
        "cash": "10000.00",
        "balance": "10000.00",
        "reserved": "0.00",
        "buying_power": "10000.00",
        "positions": [
            {
                "ticker": "AAPL",
                "quantity": 2,
                "reserved": 0,
                "available": 2,
                "average_cost": "140.0000",
                "last_price": "150.0000",
                "market_value": "300.00",
                "unrealized_pnl": "20.00",
                "realized_pnl": "0.00",
            }
        ],
        "equity": "10300.00",
        "realized_pnl": "0.00",
    }


@pytest.mark.django_db
def test_staff_get_404_for_the_portfolio_of_an_unknown_account(staff_client):
    response = staff_client.get("/users/ghost/portfolio/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No user 'ghost'.", "code": "unknown_user"}


@pytest.mark.django_db
def test_reading_a_portfolio_needs_authentication(api_client, user):
    response = api_client.get(f"/users/{user.username}/portfolio/")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
