"""HTTP tests for /transactions/: submit, settle (eagerly), list, filter, read and cancel."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework import serializers

from conftest import client_for
from stocks.tests.factories import StockDataFactory
from transactions.models import Position, Transaction, TransactionStatus
from transactions.tests.factories import PositionFactory, TransactionFactory
from users.tests.factories import UserFactory

iso = serializers.DateTimeField().to_representation

NOT_YOURS = {"detail": "You may only access your own account.", "code": "permission_denied"}
NOT_AUTHENTICATED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
TIMESTAMP_ERROR = "Enter an ISO 8601 date or datetime (2025-01-01T10:00:00Z) or Unix epoch seconds."
JAN_1 = datetime(2025, 1, 1, 12, tzinfo=UTC)
JAN_1_EPOCH = 1735732800  # 2025-01-01T12:00:00Z


def order(**overrides) -> dict:
    return {"ticker": "AAPL", "transaction_type": "buy", "transaction_volume": 2, **overrides}


def txn_json(txn: Transaction) -> dict:
    txn.refresh_from_db()
    return {
        "id": txn.pk,
        "user_id": txn.user_id,
        "ticker": txn.ticker,
        "transaction_type": txn.transaction_type,
        "transaction_volume": txn.transaction_volume,
        "unit_price": f"{txn.unit_price:.4f}",
        "transaction_price": f"{txn.transaction_price:.2f}",
        "status": txn.status,
        "failure_reason": txn.failure_reason,
        "timestamp": iso(txn.timestamp),
        "settled_at": iso(txn.settled_at) if txn.settled_at else None,
        **MARKET_ORDER_TERMS,
        # A completed order's unit_price is its fill price.
        "filled_price": f"{txn.unit_price:.4f}" if txn.status == "completed" else None,
    }


# What every market order shows of the fields that other order types use.
MARKET_ORDER_TERMS = {
    "order_type": "market",
    "limit_price": None,
    "stop_price": None,
    "trail_price": None,
    "trail_percent": None,
    "time_in_force": None,
    "triggered_at": None,
    "filled_price": None,
    "expires_at": None,
    "replaced_at": None,
}


def daily_transactions(user, days: int = 4) -> list[Transaction]:
    """One pending transaction at 12:00 UTC on 2025-01-01, 01-02, ... (oldest first)."""
    return [
        TransactionFactory(user=user, timestamp=JAN_1 + timedelta(days=day)) for day in range(days)
    ]


@pytest.fixture
def settle(django_capture_on_commit_callbacks):
    """Run the on-commit hooks (the eager settlement task) as a real request's commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


# --- POST /transactions/ -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_submitted_buy_answers_pending_and_then_settles(user_client, user, quote, settle):
    with settle():
        response = user_client.post("/transactions/", order(ticker="aapl"))

    assert response.status_code == 201, response.content
    txn = Transaction.objects.get()
    assert response.json() == {
        "id": txn.pk,
        "user_id": user.pk,
        "ticker": "AAPL",
        "transaction_type": "BUY",
        "transaction_volume": 2,
        "unit_price": "150.0000",
        "transaction_price": "300.00",
        "status": "pending",
        "failure_reason": None,
        "timestamp": iso(txn.timestamp),
        "settled_at": None,
        **MARKET_ORDER_TERMS,
    }
    assert (txn.status, txn.failure_reason) == (TransactionStatus.COMPLETED, None)
    assert txn.settled_at is not None
    user.refresh_from_db()
    assert user.balance == Decimal("9700.00")
    position = Position.objects.get(user=user, ticker="AAPL")
    assert (position.quantity, position.average_cost) == (2, Decimal("150.0000"))


@pytest.mark.django_db
def test_a_submission_without_a_commit_stays_pending(user_client, quote):
    response = user_client.post("/transactions/", order())

    assert response.status_code == 201
    assert Transaction.objects.get().status == TransactionStatus.PENDING


@pytest.mark.django_db
@pytest.mark.parametrize(
    "account",
    [
        lambda user: {"user_id": user.pk},
        lambda user: {"user_id": str(user.pk)},
        lambda user: {"user": user.pk},
        lambda user: {"user_id": user.pk, "user": user.pk},
        lambda user: {},
    ],
    ids=["user_id", "user_id-as-string", "user-synonym", "both-agreeing", "omitted"],
)
def test_a_user_trades_on_their_own_account(user_client, user, quote, account):
    response = user_client.post("/transactions/", order(**account(user)))

    assert response.status_code == 201
    assert response.json()["user_id"] == user.pk
    assert Transaction.objects.get().user == user


@pytest.mark.django_db
def test_user_and_user_id_naming_different_users_is_refused(user_client, user, quote):
    other = UserFactory()

    response = user_client.post("/transactions/", order(user_id=user.pk, user=other.pk))

    assert response.status_code == 400
    assert response.json() == {"user": ["user and user_id name different users."]}
    assert not Transaction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["user_id", "user"])
def test_a_user_cannot_trade_on_another_account(user_client, quote, field):
    other = UserFactory()

    response = user_client.post("/transactions/", order(**{field: other.pk}))

    assert response.status_code == 403
    assert response.json() == NOT_YOURS
    assert not Transaction.objects.exists()


@pytest.mark.django_db
def test_a_user_naming_an_unknown_account_gets_403(user_client, quote):
    response = user_client.post("/transactions/", order(user_id=999_999))

    assert response.status_code == 403
    assert response.json() == NOT_YOURS


@pytest.mark.django_db
def test_staff_trade_on_any_account(staff_client, staff, user, quote, settle):
    with settle():
        response = staff_client.post("/transactions/", order(user_id=user.pk))

    assert response.status_code == 201
    assert response.json()["user_id"] == user.pk
    user.refresh_from_db()
    staff.refresh_from_db()
    assert (user.balance, staff.balance) == (Decimal("9700.00"), Decimal("10000.00"))


@pytest.mark.django_db
def test_staff_omitting_the_account_trade_on_their_own(staff_client, staff, quote):
    response = staff_client.post("/transactions/", order())

    assert response.status_code == 201
    assert response.json()["user_id"] == staff.pk


@pytest.mark.django_db
@pytest.mark.parametrize("user_id", [999_999, 10**18 - 1, 10**30])
def test_an_unknown_user_is_404(staff_client, quote, user_id):
    response = staff_client.post("/transactions/", order(user_id=user_id))

    assert response.status_code == 404
    assert response.json() == {"detail": f"No user with id {user_id}.", "code": "unknown_user"}


@pytest.mark.django_db
def test_an_unknown_ticker_is_404(user_client, quote):
    response = user_client.post("/transactions/", order(ticker="zzzz"))

    assert response.status_code == 404
    assert response.json() == {"detail": "No quotes for ticker 'ZZZZ'.", "code": "unknown_ticker"}
    assert not Transaction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("buy", "BUY"),
        ("BUY", "BUY"),
        ("Buy", "BUY"),
        ("sell", "SELL"),
        ("SELL", "SELL"),
        (" sElL ", "SELL"),
    ],
)
def test_the_transaction_type_is_buy_or_sell_in_any_case(user_client, quote, given, stored):
    response = user_client.post("/transactions/", order(transaction_type=given))

    assert response.status_code == 201
    assert response.json()["transaction_type"] == stored
    assert Transaction.objects.get().transaction_type == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "messages"),
    [
        ("hold", ['"HOLD" is not a valid choice.']),
        ("short", ['"SHORT" is not a valid choice.']),
        ("", ['"" is not a valid choice.']),
        (1, ['"1" is not a valid choice.']),
        (None, ["This field may not be null."]),
        # A long s upper-cases to "S": "\u017fell".upper() == "SELL" was taken as a sell.
        ("\u017fell", ['"\u017fell" is not a valid choice.']),
    ],
)
def test_any_other_transaction_type_is_refused(user_client, quote, given, messages):
    response = user_client.post("/transactions/", order(transaction_type=given))

    assert response.status_code == 400
    assert response.json() == {"transaction_type": messages}
    assert not Transaction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("volume", "messages"),
    [
        (0, ["Ensure this value is greater than or equal to 1."]),
        (-1, ["Ensure this value is greater than or equal to 1."]),
        (Decimal("1.5"), ["A valid integer is required."]),
        ("1.5", ["A valid integer is required."]),
        ("abc", ["A valid integer is required."]),
        (True, ["A valid integer is required."]),
        ("", ["A valid integer is required."]),
        (None, ["This field may not be null."]),
        (1_000_000_001, ["Ensure this value is less than or equal to 1000000000."]),
        (10**30, ["Ensure this value is less than or equal to 1000000000."]),
        # int() reads all of these; the API takes an integer or a string of ASCII digits.
        ("\u0663", ["A valid integer is required."]),  # an Arabic-Indic 3
        ("1_0", ["A valid integer is required."]),
        (" 2", ["A valid integer is required."]),
        ("2.0", ["A valid integer is required."]),
        (Decimal("2.0"), ["A valid integer is required."]),
    ],
)
def test_a_bad_transaction_volume_is_refused(user_client, quote, volume, messages):
    response = user_client.post("/transactions/", order(transaction_volume=volume))

    assert response.status_code == 400
    assert response.json() == {"transaction_volume": messages}
    assert not Transaction.objects.exists()


@pytest.mark.django_db
def test_a_submission_missing_fields_is_refused(user_client, quote):
    response = user_client.post("/transactions/", {})

    assert response.status_code == 400
    assert response.json() == {
        "ticker": ["This field is required."],
        "transaction_type": ["This field is required."],
        "transaction_volume": ["This field is required."],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("close", "volume", "price"),
    [
        ("155.0000", 10, "1550.00"),
        ("0.3333", 3, "1.00"),  # 0.9999
        ("2.0025", 2, "4.01"),  # 4.0050
        ("1.0050", 1, "1.01"),  # 1.0050
        ("0.0050", 1, "0.01"),  # 0.0050
        ("0.0049", 1, "0.01"),  # 0.0049: a buy costs at least a cent
        ("10.1231", 7, "70.87"),  # 70.8617: up, where half up would give 70.86
        ("99999.9999", 1_000_000_000, "99999999900000.00"),
    ],
)
def test_a_buys_price_is_the_latest_close_times_volume_rounded_up_to_cents(
    user_client, close, volume, price
):
    StockDataFactory(ticker="AAPL", close_price=Decimal("1.0000"), timestamp=JAN_1)
    StockDataFactory(ticker="AAPL", close_price=Decimal(close), timestamp=JAN_1 + timedelta(1))

    response = user_client.post("/transactions/", order(transaction_volume=volume))

    assert response.status_code == 201
    assert response.json()["unit_price"] == close
    assert response.json()["transaction_price"] == price
    assert Transaction.objects.get().transaction_price == Decimal(price)


@pytest.mark.django_db
def test_submitting_needs_authentication(api_client, quote):
    response = api_client.post("/transactions/", order())

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


@pytest.mark.django_db
def test_a_buy_beyond_the_cash_balance_fails_and_changes_nothing(quote, settle):
    poor = UserFactory(balance=Decimal("299.99"))

    with settle():
        response = client_for(poor).post("/transactions/", order(transaction_volume=2))

    assert response.status_code == 201
    txn = Transaction.objects.get()
    assert (txn.status, txn.failure_reason) == ("failed", "insufficient_funds")
    poor.refresh_from_db()
    assert poor.balance == Decimal("299.99")
    assert not Position.objects.filter(user=poor, quantity__gt=0).exists()
    got = client_for(poor).get(f"/transactions/{poor.pk}/{txn.pk}/").json()
    assert (got["status"], got["failure_reason"]) == ("failed", "insufficient_funds")


@pytest.mark.django_db
def test_a_sell_of_held_shares_adds_the_cash(user_client, user, quote, settle):
    PositionFactory(user=user, ticker="AAPL", quantity=5, average_cost=Decimal("120.0000"))

    with settle():
        response = user_client.post("/transactions/", order(transaction_type="sell"))

    assert response.status_code == 201
    assert Transaction.objects.get().status == TransactionStatus.COMPLETED
    user.refresh_from_db()
    assert user.balance == Decimal("10300.00")
    assert Position.objects.get(user=user, ticker="AAPL").quantity == 3


@pytest.mark.django_db
def test_a_sell_without_the_shares_fails(user_client, user, quote, settle):
    with settle():
        response = user_client.post("/transactions/", order(transaction_type="SELL"))

    assert response.status_code == 201
    txn = Transaction.objects.get()
    assert (txn.status, txn.failure_reason) == ("failed", "insufficient_shares")
    user.refresh_from_db()
    assert user.balance == Decimal("10000.00")


@pytest.mark.django_db
def test_a_buy_then_a_sell_settle_in_submission_order(user_client, user, quote, settle):
    with settle():
        user_client.post("/transactions/", order(transaction_volume=4))
        user_client.post("/transactions/", order(transaction_type="sell", transaction_volume=4))

    assert list(Transaction.objects.order_by("id").values_list("status", flat=True)) == [
        "completed",
        "completed",
    ]
    user.refresh_from_db()
    assert user.balance == Decimal("10000.00")
    assert Position.objects.get(user=user, ticker="AAPL").quantity == 0


# --- GET /transactions/{user_id}/ --------------------------------------------------------


@pytest.mark.django_db
def test_a_user_lists_their_transactions_newest_first(user_client, user):
    txns = daily_transactions(user)
    TransactionFactory(timestamp=JAN_1)  # someone else's

    response = user_client.get(f"/transactions/{user.pk}/")

    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "next": None,
        "previous": None,
        "results": [txn_json(t) for t in reversed(txns)],
    }


@pytest.mark.django_db
def test_a_page_of_transactions_takes_three_queries_however_long_the_history(
    user_client, user, django_assert_num_queries
):
    TransactionFactory.create_batch(30, user=user)

    # token (with its user, who is the account), count, page
    with django_assert_num_queries(3):
        response = user_client.get(f"/transactions/{user.pk}/")

    assert response.json()["count"] == 30


@pytest.mark.django_db
def test_a_user_with_no_transactions_gets_an_empty_page(user_client, user):
    response = user_client.get(f"/transactions/{user.pk}/")

    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


@pytest.mark.django_db
def test_transactions_page_with_limit_and_offset(user_client, user):
    txns = daily_transactions(user)

    response = user_client.get(f"/transactions/{user.pk}/?limit=2&offset=1")

    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "next": f"http://testserver/transactions/{user.pk}/?limit=2&offset=3",
        "previous": f"http://testserver/transactions/{user.pk}/?limit=2",
        "results": [txn_json(t) for t in (txns[2], txns[1])],
    }


@pytest.mark.django_db
def test_transactions_with_the_same_timestamp_list_newest_id_first(user_client, user):
    first, second = TransactionFactory.create_batch(2, user=user, timestamp=JAN_1)

    response = user_client.get(f"/transactions/{user.pk}/")

    assert [t["id"] for t in response.json()["results"]] == [second.pk, first.pk]


FILTERS = [
    ("start_timestamp=2025-01-02&end_timestamp=2025-01-03", [2, 1]),
    ("start_timestamp=2025-01-02T12:00:00Z&end_timestamp=2025-01-03T12:00:00Z", [2, 1]),
    ("start_timestamp=2025-01-02T12:00:01Z&end_timestamp=2025-01-03T11:59:59Z", []),
    ("start_timestamp=2025-01-02T13:00:00%2B01:00", [3, 2, 1]),
    (f"start_timestamp={JAN_1_EPOCH + 86400}&end_timestamp={JAN_1_EPOCH + 2 * 86400}", [2, 1]),
    ("start_timestamp=2025-01-03", [3, 2]),
    ("end_timestamp=2025-01-01", [0]),
    ("start_timestamp=2025-01-04&end_timestamp=2025-01-04", [3]),
    ("start_timestamp=&end_timestamp=", [3, 2, 1, 0]),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("query", "days"), FILTERS)
def test_transactions_filter_by_an_inclusive_timestamp_range(user_client, user, query, days):
    txns = daily_transactions(user)

    response = user_client.get(f"/transactions/{user.pk}/?{query}")

    assert response.status_code == 200
    assert response.json()["count"] == len(days)
    assert response.json()["results"] == [txn_json(txns[d]) for d in days]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        ("2025-01-02", "2025-01-03", [2, 1]),
        ("2025-01-02T12:00:00Z", "2025-01-03T12:00:00Z", [2, 1]),
        ("2025-01-02T13:00:00+01:00", "2025-01-03T13:00:00%2B01:00", [2, 1]),
        (str(JAN_1_EPOCH + 86400), str(JAN_1_EPOCH + 2 * 86400), [2, 1]),
        ("2025-01-01", "2025-01-31", [3, 2, 1, 0]),
    ],
)
def test_transactions_filter_by_timestamps_in_the_path(user_client, user, start, end, days):
    txns = daily_transactions(user)

    response = user_client.get(f"/transactions/{user.pk}/{start}/{end}/")

    assert response.status_code == 200
    assert response.json()["count"] == len(days)
    assert response.json()["results"] == [txn_json(txns[d]) for d in days]


@pytest.mark.django_db
def test_the_path_form_pages_too(user_client, user):
    txns = daily_transactions(user)

    response = user_client.get(f"/transactions/{user.pk}/2025-01-01/2025-01-31/?limit=1&offset=3")

    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "next": None,
        "previous": f"http://testserver/transactions/{user.pk}/2025-01-01/2025-01-31/"
        "?limit=1&offset=2",
        "results": [txn_json(txns[0])],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("start_timestamp=last-week", {"start_timestamp": [TIMESTAMP_ERROR]}),
        ("end_timestamp=2025-02-30", {"end_timestamp": [TIMESTAMP_ERROR]}),
        ("start_timestamp=1e9", {"start_timestamp": [TIMESTAMP_ERROR]}),
        ("start_timestamp=-86400", {"start_timestamp": [TIMESTAMP_ERROR]}),
        ("end_timestamp=9999999999999999", {"end_timestamp": [TIMESTAMP_ERROR]}),
        ("end_timestamp=9999-12-31T23:59:59-01:00", {"end_timestamp": [TIMESTAMP_ERROR]}),
        (
            "start_timestamp=2025-01-03&end_timestamp=2025-01-02",
            {"end_timestamp": ["end_timestamp must not be before start_timestamp."]},
        ),
    ],
)
def test_bad_timestamp_filters_are_refused(user_client, user, query, errors):
    response = user_client.get(f"/transactions/{user.pk}/?{query}")

    assert response.status_code == 400
    assert response.json() == errors


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("start", "end", "errors"),
    [
        ("yesterday", "2025-01-02", {"start_timestamp": [TIMESTAMP_ERROR]}),
        ("2025-01-01", "2025-13-01", {"end_timestamp": [TIMESTAMP_ERROR]}),
        (
            "2025-01-03",
            "2025-01-02",
            {"end_timestamp": ["end_timestamp must not be before start_timestamp."]},
        ),
    ],
)
def test_bad_timestamps_in_the_path_are_refused(user_client, user, start, end, errors):
    response = user_client.get(f"/transactions/{user.pk}/{start}/{end}/")

    assert response.status_code == 400
    assert response.json() == errors


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "2025-01-01/2025-01-31/"])
def test_a_user_cannot_list_another_users_transactions(user_client, suffix):
    other = UserFactory()
    daily_transactions(other)

    response = user_client.get(f"/transactions/{other.pk}/{suffix}")

    assert response.status_code == 403
    assert response.json() == NOT_YOURS


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "2025-01-01/2025-01-31/"])
def test_staff_list_anyones_transactions(staff_client, user, suffix):
    txns = daily_transactions(user)

    response = staff_client.get(f"/transactions/{user.pk}/{suffix}")

    assert response.status_code == 200
    assert response.json()["results"] == [txn_json(t) for t in reversed(txns)]


@pytest.mark.django_db
def test_staff_listing_an_unknown_user_get_404(staff_client):
    response = staff_client.get("/transactions/999999/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No user with id 999999.", "code": "unknown_user"}


@pytest.mark.django_db
def test_listing_transactions_needs_authentication(api_client, user):
    response = api_client.get(f"/transactions/{user.pk}/")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


# --- GET and DELETE /transactions/{user_id}/{transaction_id}/ ----------------------------


@pytest.mark.django_db
def test_a_user_reads_one_of_their_transactions(user_client, user):
    txn = TransactionFactory(user=user, timestamp=JAN_1)

    response = user_client.get(f"/transactions/{user.pk}/{txn.pk}/")

    assert response.status_code == 200
    assert response.json() == txn_json(txn)


@pytest.mark.django_db
def test_another_users_transaction_under_your_own_id_is_404(user_client, user):
    theirs = TransactionFactory()

    response = user_client.get(f"/transactions/{user.pk}/{theirs.pk}/")

    assert response.status_code == 404
    assert response.json() == {
        "detail": f"No transaction {theirs.pk} for user {user.pk}.",
        "code": "unknown_transaction",
    }


@pytest.mark.django_db
def test_another_users_transaction_under_their_id_is_403(user_client):
    theirs = TransactionFactory()

    response = user_client.get(f"/transactions/{theirs.user_id}/{theirs.pk}/")

    assert response.status_code == 403
    assert response.json() == NOT_YOURS


@pytest.mark.django_db
def test_staff_read_anyones_transaction(staff_client, user):
    txn = TransactionFactory(user=user)

    response = staff_client.get(f"/transactions/{user.pk}/{txn.pk}/")

    assert response.status_code == 200
    assert response.json() == txn_json(txn)


@pytest.mark.django_db
def test_reading_a_transaction_needs_authentication(api_client):
    txn = TransactionFactory()

    response = api_client.get(f"/transactions/{txn.user_id}/{txn.pk}/")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


@pytest.mark.django_db
def test_a_user_cancels_a_pending_transaction(user_client, user):
    txn = TransactionFactory(user=user)

    response = user_client.delete(f"/transactions/{user.pk}/{txn.pk}/")

    assert response.status_code == 200
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.CANCELLED
    assert txn.settled_at is not None
    assert response.json() == txn_json(txn)
    assert response.json()["status"] == "cancelled"


@pytest.mark.django_db
def test_a_cancelled_transaction_is_never_settled(user_client, user, settle):
    txn = TransactionFactory(user=user, unit_price=Decimal("150.0000"))
    user_client.delete(f"/transactions/{user.pk}/{txn.pk}/")
    StockDataFactory(ticker="AAPL")

    with settle():
        user_client.post("/transactions/", order(ticker="AAPL", transaction_volume=1))

    txn.refresh_from_db()
    assert txn.status == TransactionStatus.CANCELLED
    user.refresh_from_db()
    assert user.balance == Decimal("9900.00")  # only the new 1 x 100.0000 buy


@pytest.mark.django_db
@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
def test_cancelling_a_settled_transaction_is_a_conflict(user_client, user, final):
    txn = TransactionFactory(user=user, status=final)

    response = user_client.delete(f"/transactions/{user.pk}/{txn.pk}/")

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Transaction {txn.pk} is already {final}; "
        "only pending transactions can be cancelled.",
        "code": "not_pending",
    }
    txn.refresh_from_db()
    assert txn.status == final


@pytest.mark.django_db
def test_a_transaction_settled_over_the_api_cannot_be_cancelled(user_client, user, quote, settle):
    with settle():
        txn_id = user_client.post("/transactions/", order()).json()["id"]

    response = user_client.delete(f"/transactions/{user.pk}/{txn_id}/")

    assert response.status_code == 409
    assert response.json()["code"] == "not_pending"


@pytest.mark.django_db
def test_a_user_cannot_cancel_another_users_transaction(user_client, user):
    theirs = TransactionFactory()

    by_their_id = user_client.delete(f"/transactions/{theirs.user_id}/{theirs.pk}/")
    by_own_id = user_client.delete(f"/transactions/{user.pk}/{theirs.pk}/")

    assert (by_their_id.status_code, by_own_id.status_code) == (403, 404)
    assert by_their_id.json() == NOT_YOURS
    theirs.refresh_from_db()
    assert theirs.status == TransactionStatus.PENDING


@pytest.mark.django_db
def test_staff_cancel_anyones_pending_transaction(staff_client, user):
    txn = TransactionFactory(user=user)

    response = staff_client.delete(f"/transactions/{user.pk}/{txn.pk}/")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


@pytest.mark.django_db
def test_cancelling_needs_authentication(api_client):
    txn = TransactionFactory()

    response = api_client.delete(f"/transactions/{txn.user_id}/{txn.pk}/")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    txn.refresh_from_db()
    assert txn.status == TransactionStatus.PENDING


@pytest.mark.django_db
def test_cancelling_an_unknown_transaction_is_404(user_client, user):
    response = user_client.delete(f"/transactions/{user.pk}/999999/")

    assert response.status_code == 404
    assert response.json() == {
        "detail": f"No transaction 999999 for user {user.pk}.",
        "code": "unknown_transaction",
    }


@pytest.mark.django_db
def test_the_whole_list_cannot_be_deleted(user_client, user):
    TransactionFactory(user=user)

    response = user_client.delete(f"/transactions/{user.pk}/")

    assert response.status_code == 405
    assert response.json() == {
        "detail": 'Method "DELETE" not allowed.',
        "code": "method_not_allowed",
    }
    assert Transaction.objects.count() == 1


# --- Idempotency-Key (API.md) --------------------------------------------------------------


@pytest.mark.django_db
def test_a_retry_with_the_same_idempotency_key_returns_the_first_transaction(user_client, quote):
    first = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="order-2025-01-01-a")

    retry = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="order-2025-01-01-a")

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert Transaction.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["k" * 65, "tab\there"])
def test_a_malformed_idempotency_key_is_refused(user_client, quote, key):
    response = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert not Transaction.objects.exists()


@pytest.mark.django_db
def test_a_replay_after_settlement_returns_the_settled_transaction(user_client, quote, settle):
    with settle():
        first = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="settled-key")

    retry = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="settled-key")

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["status"] == "completed"
    assert Transaction.objects.count() == 1


@pytest.mark.django_db
def test_the_same_idempotency_key_from_another_user_creates_that_users_own_transaction(
    user_client, quote
):
    other = UserFactory(username="other-trader")
    first = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="shared-key")

    theirs = client_for(other).post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="shared-key")

    assert (first.status_code, theirs.status_code) == (201, 201)
    assert theirs.json()["user_id"] == other.pk
    assert Transaction.objects.count() == 2


@pytest.mark.django_db
def test_an_idempotency_key_older_than_24_hours_creates_a_new_transaction(user_client, quote):
    first = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="yesterday")
    Transaction.objects.filter(pk=first.json()["id"]).update(
        timestamp=timezone.now() - timedelta(hours=24, seconds=1)
    )

    again = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="yesterday")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] != first.json()["id"]
    assert Transaction.objects.count() == 2


@pytest.mark.django_db
def test_an_idempotency_key_just_inside_24_hours_still_replays(user_client, quote):
    first = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="today")
    Transaction.objects.filter(pk=first.json()["id"]).update(
        timestamp=timezone.now() - timedelta(hours=23, minutes=59)
    )

    again = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="today")

    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


@pytest.mark.django_db
def test_an_empty_idempotency_key_is_refused_with_its_code(user_client, quote):
    response = user_client.post("/transactions/", order(), HTTP_IDEMPOTENCY_KEY="")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Idempotency-Key must be 1-64 printable ASCII characters.",
        "code": "invalid_idempotency_key",
    }
    assert not Transaction.objects.exists()


@pytest.mark.django_db
def test_submitting_an_order_takes_a_fixed_small_number_of_queries(
    user_client, quote, django_assert_num_queries
):
    # token + caller in one join, latest close, then SAVEPOINT / INSERT / number the event /
    # INSERT it with the account as of its number / RELEASE.
    with django_assert_num_queries(7):
        response = user_client.post("/transactions/", order())

    assert response.status_code == 201
