"""HTTP tests for conditional orders: POST fields and refusals, PATCH (replace), DELETE."""

from decimal import Decimal

import pytest
from rest_framework import serializers

from transactions.models import Transaction
from transactions.tests.factories import PositionFactory

pytestmark = pytest.mark.django_db
iso = serializers.DateTimeField().to_representation


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def limit_buy(**overrides) -> dict:
    return {
        "ticker": "AAPL",
        "transaction_type": "buy",
        "transaction_volume": 10,
        "order_type": "limit",
        "limit_price": "140.00",
        **overrides,
    }


def test_a_limit_buy_answers_201_open_with_every_order_field(user_client, user, quote, commits):
    with commits():
        response = user_client.post("/transactions/", limit_buy(order_type=" LIMIT "))

    assert response.status_code == 201, response.content
    txn = Transaction.objects.get()
    assert response.json() == {
        "id": txn.pk,
        "user_id": user.pk,
        "ticker": "AAPL",
        "transaction_type": "BUY",
        "transaction_volume": 10,
        "unit_price": "140.0000",
        "transaction_price": "1400.00",
        "status": "open",
        "failure_reason": None,
        "timestamp": iso(txn.timestamp),
        "settled_at": None,
        "order_type": "limit",
        "limit_price": "140.0000",
        "stop_price": None,
        "trail_price": None,
        "trail_percent": None,
        "time_in_force": "day",
        "triggered_at": None,
        "filled_price": None,
        "expires_at": iso(txn.expires_at),
        "replaced_at": None,
    }
    detail = user_client.get(f"/users/{user.username}/").json()
    assert (detail["balance"], detail["reserved"], detail["buying_power"]) == (
        "10000.00",
        "1400.00",
        "8600.00",
    )


def test_a_limit_buy_beyond_the_buying_power_is_a_409_and_stores_nothing(user_client, quote):
    response = user_client.post("/transactions/", limit_buy(transaction_volume=72))

    assert response.status_code == 409
    assert response.json() == {
        "detail": "This needs 10080.00 of buying power; 10000.00 is available.",
        "code": "insufficient_buying_power",
    }
    assert Transaction.objects.count() == 0


def test_a_limit_sell_beyond_the_unreserved_shares_is_a_409(user_client, user, quote):
    PositionFactory(user=user, quantity=3)

    response = user_client.post(
        "/transactions/", limit_buy(transaction_type="sell", transaction_volume=4)
    )

    assert response.status_code == 409
    assert response.json() == {
        "detail": "This needs 4 unreserved AAPL shares; 3 are available.",
        "code": "insufficient_shares",
    }


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"order_type": "limit", "limit_price": None},
            {"limit_price": ["This field may not be null."]},
        ),
        (
            {"order_type": "limit", "limit_price": "0"},
            {"limit_price": ["Ensure this value is greater than 0."]},
        ),
        (
            {"order_type": "limit", "limit_price": "1.00001"},
            {"limit_price": ["Ensure that there are no more than 4 decimal places."]},
        ),
        (
            {"order_type": "limit", "limit_price": "10", "stop_price": "9"},
            {"stop_price": ["A limit order takes no stop_price."]},
        ),
        ({"order_type": "stop"}, {"stop_price": ["A stop order needs stop_price."]}),
        (
            {"order_type": "stop_limit", "stop_price": "9"},
            {"limit_price": ["A stop_limit order needs limit_price."]},
        ),
        (
            {"order_type": "trailing_stop", "trail_price": "1", "trail_percent": "2"},
            {
                "trail_price": [
                    "A trailing_stop order needs exactly one of trail_price and trail_percent."
                ]
            },
        ),
        (
            {"order_type": "trailing_stop"},
            {
                "trail_price": [
                    "A trailing_stop order needs exactly one of trail_price and trail_percent."
                ]
            },
        ),
        (
            {"order_type": "trailing_stop", "trail_percent": "100"},
            {"trail_percent": ["Ensure this value is less than 100."]},
        ),
        ({"limit_price": "10"}, {"limit_price": ["A market order takes no limit_price."]}),
        (
            {"time_in_force": "gtc"},
            {
                "time_in_force": [
                    "A market order takes no time_in_force: it settles at once, at the latest "
                    "close."
                ]
            },
        ),
        ({"order_type": "iceberg"}, {"order_type": ['"iceberg" is not a valid choice.']}),
        (
            {"order_type": "limit", "limit_price": "10", "time_in_force": "fok"},
            {"time_in_force": ['"fok" is not a valid choice.']},
        ),
    ],
)
def test_malformed_order_terms_are_a_400_and_store_nothing(user_client, quote, body, errors):
    order = {"ticker": "AAPL", "transaction_type": "buy", "transaction_volume": 1, **body}

    response = user_client.post("/transactions/", order)

    assert response.status_code == 400
    assert response.json() == errors
    assert Transaction.objects.count() == 0


def test_patch_replaces_an_open_order(user_client, user, quote, commits):
    with commits():
        txn = Transaction.objects.get(
            pk=user_client.post("/transactions/", limit_buy()).json()["id"]
        )

    response = user_client.patch(
        f"/transactions/{user.pk}/{txn.pk}/", {"limit_price": "120", "time_in_force": "GTC"}
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["id"], body["status"], body["limit_price"], body["transaction_price"]) == (
        txn.pk,
        "open",
        "120.0000",
        "1200.00",
    )
    assert (body["time_in_force"], body["expires_at"]) == ("gtc", None)
    assert body["replaced_at"] is not None
    assert user_client.get(f"/users/{user.username}/").json()["reserved"] == "1200.00"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"non_field_errors": ["Send at least one field to change."]}),
        ({"stop_price": "5"}, {"stop_price": ["A limit order takes no stop_price."]}),
        (
            {"transaction_volume": 0},
            {"transaction_volume": ["Ensure this value is greater than or equal to 1."]},
        ),
    ],
)
def test_a_malformed_replace_is_a_400_and_changes_nothing(user_client, user, quote, body, errors):
    txn_id = user_client.post("/transactions/", limit_buy()).json()["id"]

    response = user_client.patch(f"/transactions/{user.pk}/{txn_id}/", body)

    assert (response.status_code, response.json()) == (400, errors)
    txn = Transaction.objects.get(pk=txn_id)
    assert (txn.limit_price, txn.transaction_volume, txn.replaced_at) == (Decimal("140"), 10, None)


def test_replacing_a_market_order_is_a_409_not_open(user_client, user, quote):
    txn_id = user_client.post(
        "/transactions/", {"ticker": "AAPL", "transaction_type": "buy", "transaction_volume": 1}
    ).json()["id"]

    response = user_client.patch(f"/transactions/{user.pk}/{txn_id}/", {"transaction_volume": 2})

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Transaction {txn_id} is already pending; only open orders can be replaced.",
        "code": "not_open",
    }


def test_delete_cancels_an_open_order_and_releases_the_cash(user_client, user, quote):
    txn_id = user_client.post("/transactions/", limit_buy()).json()["id"]

    response = user_client.delete(f"/transactions/{user.pk}/{txn_id}/")

    assert (response.status_code, response.json()["status"]) == (200, "cancelled")
    detail = user_client.get(f"/users/{user.username}/").json()
    assert (detail["reserved"], detail["buying_power"]) == ("0.00", "10000.00")


def test_another_users_order_cannot_be_replaced(user_client, quote, staff_client, staff):
    other_order = staff_client.post("/transactions/", limit_buy(user_id=staff.pk))

    response = user_client.patch(
        f"/transactions/{staff.pk}/{other_order.json()['id']}/", {"limit_price": "1"}
    )

    assert response.status_code == 403


def test_a_trailing_sell_whose_trail_reaches_zero_is_a_400(user_client, user, quote):
    PositionFactory(user=user, quantity=3)

    response = user_client.post(
        "/transactions/",
        {
            "ticker": "AAPL",
            "transaction_type": "sell",
            "transaction_volume": 1,
            "order_type": "trailing_stop",
            "trail_price": "150",
        },
    )

    assert (response.status_code, response.json()) == (
        400,
        {"trail_price": ["A trailing sell's trail must be less than the current close, 150.0000."]},
    )
    assert Transaction.objects.count() == 0
