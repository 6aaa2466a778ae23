"""Cash transfers: the service's rules, the HTTP route and the admin, with exact Decimals."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db.models import Sum
from rest_framework import serializers

from stockflow.money import MAX_BALANCE, MAX_TRANSFER_AMOUNT
from stocks.tests.factories import StockDataFactory
from transactions import services
from transactions.errors import BalanceLimitExceeded, InsufficientBuyingPower, InvalidTransferAmount
from transactions.models import Transaction, TransactionStatus, Transfer, TransferDirection
from transactions.services import (
    transaction_submit,
    transactions_settle_for_user,
    transfer_create,
    transfer_create_once,
)
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

DEPOSIT, WITHDRAWAL = TransferDirection.DEPOSIT, TransferDirection.WITHDRAWAL
iso = serializers.DateTimeField().to_representation
NOT_YOURS = {"detail": "You may only access your own account.", "code": "permission_denied"}
NOT_AUTHENTICATED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
AMOUNT_RULE = (
    "Enter an amount greater than 0 and less than 1000000000000, with at most 2 decimal places."
)


def balance_of(user: User) -> Decimal:
    return User.objects.get(pk=user.pk).balance


def transfer_json(transfer: Transfer) -> dict:
    transfer.refresh_from_db()
    return {
        "id": transfer.pk,
        "user_id": transfer.user_id,
        "username": transfer.user.username,
        "direction": transfer.direction,
        "amount": f"{transfer.amount:.2f}",
        "balance_after": f"{transfer.balance_after:.2f}",
        "created_at": iso(transfer.created_at),
    }


def transfers_url(user: User) -> str:
    return f"/users/{user.username}/transfers/"


# --- the service ---------------------------------------------------------------------------


def test_a_deposit_adds_to_the_balance_and_writes_the_ledger_row():
    user = UserFactory(balance=Decimal("1000.00"))

    transfer = transfer_create(user=user, direction=DEPOSIT, amount=Decimal("250.75"))

    assert balance_of(user) == Decimal("1250.75")
    stored = Transfer.objects.get()
    assert (stored.pk, stored.user_id, stored.direction) == (transfer.pk, user.pk, DEPOSIT)
    assert (stored.amount, stored.balance_after) == (Decimal("250.75"), Decimal("1250.75"))
    assert stored.idempotency_key is None


def test_a_withdrawal_takes_from_the_balance():
    user = UserFactory(balance=Decimal("1000.00"))

    transfer = transfer_create(user=user, direction=WITHDRAWAL, amount=Decimal("0.01"))

    assert balance_of(user) == Decimal("999.99")
    assert transfer.balance_after == Decimal("999.99")


def test_a_withdrawal_of_exactly_the_buying_power_leaves_nothing():
    user = UserFactory(balance=Decimal("1000.00"))

    transfer_create(user=user, direction=WITHDRAWAL, amount=Decimal("1000.00"))

    assert balance_of(user) == Decimal("0.00")


def test_a_withdrawal_one_cent_over_the_buying_power_is_refused_and_changes_nothing():
    user = UserFactory(balance=Decimal("1000.00"))

    with pytest.raises(InsufficientBuyingPower) as refused:
        transfer_create(user=user, direction=WITHDRAWAL, amount=Decimal("1000.01"))

    assert refused.value.detail == "This needs 1000.01 of buying power; 1000.00 is available."
    assert balance_of(user) == Decimal("1000.00")
    assert not Transfer.objects.exists()


def test_cash_reserved_by_open_buy_orders_cannot_be_withdrawn():
    user = UserFactory(balance=Decimal("2000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("190.0000"))
    transaction_submit(
        user=user,
        ticker="AAPL",
        transaction_type="BUY",
        transaction_volume=10,
        order_type="limit",
        limit_price=Decimal("180.0000"),
        time_in_force="gtc",
    )  # reserves 1800.00

    with pytest.raises(InsufficientBuyingPower) as refused:
        transfer_create(user=user, direction=WITHDRAWAL, amount=Decimal("200.01"))
    assert refused.value.detail == "This needs 200.01 of buying power; 200.00 is available."
    transfer_create(user=user, direction=WITHDRAWAL, amount=Decimal("200.00"))

    stored = User.objects.get(pk=user.pk)
    assert (stored.balance, stored.reserved) == (Decimal("1800.00"), Decimal("1800.00"))


@pytest.mark.parametrize(
    "amount",
    ["0", "0.00", "-0.01", "-100", "0.001", "10.005", str(MAX_TRANSFER_AMOUNT), "1e13"],
)
def test_an_amount_not_in_cents_above_zero_and_below_the_cap_is_refused(amount):
    user = UserFactory(balance=Decimal("1000.00"))

    for direction in (DEPOSIT, WITHDRAWAL):
        with pytest.raises(InvalidTransferAmount) as refused:
            transfer_create(user=user, direction=direction, amount=Decimal(amount))
        assert (refused.value.field, refused.value.detail) == ("amount", AMOUNT_RULE)

    assert balance_of(user) == Decimal("1000.00")
    assert not Transfer.objects.exists()


def test_the_largest_amount_below_the_cap_is_deposited():
    user = UserFactory(balance=Decimal("0.00"))

    transfer_create(user=user, direction=DEPOSIT, amount=MAX_TRANSFER_AMOUNT - Decimal("0.01"))

    assert balance_of(user) == Decimal("999999999999.99")


def test_an_amount_with_trailing_zeros_is_stored_in_cents():
    user = UserFactory(balance=Decimal("0.00"))

    transfer = transfer_create(user=user, direction=DEPOSIT, amount=Decimal("5.000"))

    assert str(transfer.amount) == "5.00"
    assert balance_of(user) == Decimal("5.00")


def test_a_deposit_that_would_reach_the_most_a_balance_holds_is_refused():
    user = UserFactory(balance=Decimal("0.00"))
    User.objects.filter(pk=user.pk).update(balance=MAX_BALANCE - Decimal("1.00"))

    with pytest.raises(BalanceLimitExceeded) as refused:
        transfer_create(user=user, direction=DEPOSIT, amount=Decimal("1.00"))
    transfer_create(user=user, direction=DEPOSIT, amount=Decimal("0.99"))

    assert refused.value.field == "amount"
    assert balance_of(user) == MAX_BALANCE - Decimal("0.01")
    assert Transfer.objects.count() == 1


def test_an_unknown_direction_is_a_programming_error():
    user = UserFactory(balance=Decimal("10.00"))

    with pytest.raises(ValueError, match="unknown transfer direction 'gift'"):
        transfer_create(user=user, direction="gift", amount=Decimal("1.00"))

    assert balance_of(user) == Decimal("10.00")


def test_a_replayed_idempotency_key_returns_the_first_transfer_and_changes_nothing():
    user = UserFactory(balance=Decimal("100.00"))

    first, created = transfer_create_once(
        user=user, idempotency_key="dep-1", direction=DEPOSIT, amount=Decimal("40.00")
    )
    again, created_again = transfer_create_once(
        user=user, idempotency_key="dep-1", direction=WITHDRAWAL, amount=Decimal("99.00")
    )

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert (again.direction, again.amount) == (DEPOSIT, Decimal("40.00"))
    assert balance_of(user) == Decimal("140.00")
    assert Transfer.objects.count() == 1


def test_the_same_key_from_another_user_makes_that_users_own_transfer():
    alice, bob = UserFactory(balance=Decimal("0.00")), UserFactory(balance=Decimal("0.00"))

    transfer_create_once(user=alice, idempotency_key="k", direction=DEPOSIT, amount=Decimal("1"))
    _, created = transfer_create_once(
        user=bob, idempotency_key="k", direction=DEPOSIT, amount=Decimal("2")
    )

    assert created is True
    assert (balance_of(alice), balance_of(bob)) == (Decimal("1.00"), Decimal("2.00"))


def test_an_idempotency_key_older_than_24_hours_makes_a_new_transfer():
    user = UserFactory(balance=Decimal("0.00"))
    old, _ = transfer_create_once(
        user=user, idempotency_key="k", direction=DEPOSIT, amount=Decimal("5.00")
    )
    Transfer.objects.filter(pk=old.pk).update(
        created_at=old.created_at - services.IDEMPOTENCY_WINDOW - timedelta(seconds=1)
    )

    new, created = transfer_create_once(
        user=user, idempotency_key="k", direction=DEPOSIT, amount=Decimal("5.00")
    )

    assert created is True and new.pk != old.pk
    assert balance_of(user) == Decimal("10.00")
    assert Transfer.objects.get(pk=old.pk).idempotency_key is None


def test_a_transfer_that_loses_the_idempotency_race_returns_the_winners(monkeypatch):
    user = UserFactory(balance=Decimal("0.00"))
    winner = transfer_create(
        user=user, direction=DEPOSIT, amount=Decimal("7.00"), idempotency_key="raced"
    )
    lookups = iter([None, winner])  # the first look misses: the winner had not committed yet
    monkeypatch.setattr(
        "transactions.services.transfers._transfer_for_key", lambda **_: next(lookups)
    )

    transfer, created = transfer_create_once(
        user=user, idempotency_key="raced", direction=DEPOSIT, amount=Decimal("7.00")
    )

    assert (transfer.pk, created) == (winner.pk, False)
    assert balance_of(user) == Decimal("7.00")  # the loser's balance change rolled back
    assert Transfer.objects.count() == 1


def test_a_transfer_logs_a_structured_line(caplog):
    user = UserFactory(balance=Decimal("10.00"))

    with caplog.at_level("INFO", logger="transactions.services"):
        transfer = transfer_create(user=user, direction=WITHDRAWAL, amount=Decimal("2.5"))

    assert (
        f"transfer_created transfer_id={transfer.pk} user_id={user.pk} direction=withdrawal "
        "amount=2.50 balance=7.50"
    ) in caplog.text


def test_transfers_and_settled_orders_add_up_to_the_balance():
    """Invariant 1: initial + deposits - withdrawals - completed buys + completed sells."""
    user = UserFactory(balance=Decimal("100.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("12.3400"))
    transfer_create(user=user, direction=DEPOSIT, amount=Decimal("500.00"))
    transaction_submit(user=user, ticker="ACME", transaction_type="BUY", transaction_volume=30)
    transaction_submit(user=user, ticker="ACME", transaction_type="SELL", transaction_volume=7)
    transactions_settle_for_user(user_id=user.pk)
    transfer_create(user=user, direction=WITHDRAWAL, amount=Decimal("123.45"))
    transaction_submit(user=user, ticker="ACME", transaction_type="BUY", transaction_volume=50)
    transactions_settle_for_user(user_id=user.pk)  # 617.00 > what is left: fails

    def total(queryset, **match) -> Decimal:
        return queryset.filter(**match).aggregate(s=Sum("amount"))["s"] or Decimal(0)

    def spent(kind) -> Decimal:
        completed = Transaction.objects.filter(
            user=user, status=TransactionStatus.COMPLETED, transaction_type=kind
        )
        return completed.aggregate(s=Sum("transaction_price"))["s"] or Decimal(0)

    transfers = Transfer.objects.filter(user=user)
    expected = (
        Decimal("100.00")
        + total(transfers, direction=DEPOSIT)
        - total(transfers, direction=WITHDRAWAL)
        - spent("BUY")
        + spent("SELL")
    )
    # 100 + 500 - 370.20 (30 x 12.34) + 86.38 (7 x 12.34) - 123.45
    assert balance_of(user) == expected == Decimal("192.73")
    assert Transfer.objects.order_by("id").last().balance_after == Decimal("192.73")


# --- the HTTP route ------------------------------------------------------------------------


def test_a_deposit_answers_201_with_the_transfer(user_client, user):
    response = user_client.post(transfers_url(user), {"direction": "deposit", "amount": "250.50"})

    assert response.status_code == 201, response.content
    transfer = Transfer.objects.get()
    assert response.json() == transfer_json(transfer)
    assert response.json()["username"] == user.username
    assert response.json()["balance_after"] == "10250.50"
    assert balance_of(user) == Decimal("10250.50")


def test_a_withdrawal_as_a_json_number_in_any_case_answers_201(user_client, user):
    response = user_client.post(
        f"/api/users/{user.username.upper()}/transfers",
        '{"direction": "WithDrawal", "amount": 9999.99}',
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    assert (response.json()["direction"], response.json()["amount"]) == ("withdrawal", "9999.99")
    assert balance_of(user) == Decimal("0.01")


def test_staff_may_transfer_on_any_account(staff_client, user):
    response = staff_client.post(transfers_url(user), {"direction": "deposit", "amount": "1"})

    assert response.status_code == 201
    assert response.json()["user_id"] == user.pk
    assert balance_of(user) == Decimal("10001.00")


def test_a_replay_with_the_same_idempotency_key_answers_200_with_the_first_transfer(
    user_client, user
):
    body = {"direction": "deposit", "amount": "100.00"}
    first = user_client.post(transfers_url(user), body, HTTP_IDEMPOTENCY_KEY="dep-2025-01-02")
    again = user_client.post(transfers_url(user), body, HTTP_IDEMPOTENCY_KEY="dep-2025-01-02")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert balance_of(user) == Decimal("10100.00")
    assert Transfer.objects.count() == 1


def test_a_malformed_idempotency_key_is_refused_and_changes_nothing(user_client, user):
    response = user_client.post(
        transfers_url(user), {"direction": "deposit", "amount": "1"}, HTTP_IDEMPOTENCY_KEY="x" * 65
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Idempotency-Key must be 1-64 printable ASCII characters.",
        "code": "invalid_idempotency_key",
    }
    assert balance_of(user) == Decimal("10000.00")


def test_a_withdrawal_beyond_the_buying_power_is_a_409(user_client, user):
    response = user_client.post(
        transfers_url(user), {"direction": "withdrawal", "amount": "10000.01"}
    )

    assert response.status_code == 409
    assert response.json() == {
        "detail": "This needs 10000.01 of buying power; 10000.00 is available.",
        "code": "insufficient_buying_power",
    }
    assert balance_of(user) == Decimal("10000.00")
    assert not Transfer.objects.exists()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"direction": "deposit", "amount": "0"}, {"amount": [AMOUNT_RULE]}),
        ({"direction": "deposit", "amount": "0.00"}, {"amount": [AMOUNT_RULE]}),
        ({"direction": "deposit", "amount": "-5.00"}, {"amount": [AMOUNT_RULE]}),
        ({"direction": "withdrawal", "amount": -1}, {"amount": [AMOUNT_RULE]}),
        ({"direction": "deposit", "amount": "1000000000000"}, {"amount": [AMOUNT_RULE]}),
        (
            {"direction": "deposit", "amount": "1.005"},
            {"amount": ["Ensure that there are no more than 2 decimal places."]},
        ),
        ({"direction": "deposit", "amount": "abc"}, {"amount": ["A valid number is required."]}),
        ({"direction": "deposit", "amount": "1_000"}, {"amount": ["A valid number is required."]}),
        ({"direction": "deposit", "amount": True}, {"amount": ["A valid number is required."]}),
        ({"direction": "deposit", "amount": None}, {"amount": ["This field may not be null."]}),
        ({"direction": "deposit"}, {"amount": ["This field is required."]}),
        ({"amount": "10.00"}, {"direction": ["This field is required."]}),
        (
            {"direction": "gift", "amount": "10.00"},
            {"direction": ['"gift" is not a valid choice.']},
        ),
        (
            {"direction": "", "amount": "0"},
            {"direction": ['"" is not a valid choice.'], "amount": [AMOUNT_RULE]},
        ),
        (
            {},
            {"direction": ["This field is required."], "amount": ["This field is required."]},
        ),
    ],
)
def test_bad_transfer_bodies_are_400s_that_change_nothing(user_client, user, body, errors):
    response = user_client.post(transfers_url(user), body, format="json")

    assert response.status_code == 400
    assert response.json() == errors
    assert balance_of(user) == Decimal("10000.00")
    assert not Transfer.objects.exists()


def test_a_deposit_beyond_what_a_balance_holds_is_a_400_not_a_500(user_client, user):
    User.objects.filter(pk=user.pk).update(balance=MAX_BALANCE - Decimal("0.01"))

    response = user_client.post(transfers_url(user), {"direction": "deposit", "amount": "0.01"})

    assert response.status_code == 400
    assert response.json() == {
        "amount": [
            "This deposit would take the balance to 100000000000000000000000000 or more; a "
            "balance stays below it."
        ]
    }
    assert not Transfer.objects.exists()


def test_another_users_account_is_a_403_whether_or_not_it_exists(user_client, user):
    other = UserFactory(balance=Decimal("50.00"))

    for path in (transfers_url(other), "/users/ghost/transfers/"):
        posted = user_client.post(path, {"direction": "withdrawal", "amount": "50.00"})
        listed = user_client.get(path)

        assert (posted.status_code, listed.status_code) == (403, 403), path
        assert posted.json() == listed.json() == NOT_YOURS
    assert balance_of(other) == Decimal("50.00")
    assert not Transfer.objects.exists()


def test_an_unknown_account_is_a_404_for_staff(staff_client):
    posted = staff_client.post("/users/ghost/transfers/", {"direction": "deposit", "amount": "1"})
    listed = staff_client.get("/users/ghost/transfers/")

    assert (posted.status_code, listed.status_code) == (404, 404)
    assert posted.json() == listed.json() == {"detail": "No user 'ghost'.", "code": "unknown_user"}


def test_anonymous_callers_get_a_401(api_client, user):
    posted = api_client.post(transfers_url(user), {"direction": "deposit", "amount": "1"})
    listed = api_client.get(transfers_url(user))

    assert (posted.status_code, listed.status_code) == (401, 401)
    assert posted.json() == listed.json() == NOT_AUTHENTICATED
    assert balance_of(user) == Decimal("10000.00")


def test_the_list_is_newest_first_and_paginated(user_client, user):
    amounts = ["1.00", "2.00", "3.00"]
    made = [transfer_create(user=user, direction=DEPOSIT, amount=Decimal(a)) for a in amounts]
    other = UserFactory()
    transfer_create(user=other, direction=DEPOSIT, amount=Decimal("9.00"))  # not listed

    first = user_client.get(f"{transfers_url(user)}?limit=2")
    rest = user_client.get(f"{transfers_url(user)}?limit=2&offset=2")

    assert first.status_code == rest.status_code == 200
    page = first.json()
    assert page["count"] == 3
    assert page["results"] == [transfer_json(made[2]), transfer_json(made[1])]
    assert page["next"].endswith(f"{transfers_url(user)}?limit=2&offset=2")
    assert page["previous"] is None
    assert rest.json()["results"] == [transfer_json(made[0])]
    assert [t["balance_after"] for t in page["results"]] == ["10006.00", "10003.00"]


def test_transfers_made_in_the_same_instant_list_newest_id_first(user_client, user):
    made = [transfer_create(user=user, direction=DEPOSIT, amount=Decimal("1")) for _ in range(3)]
    Transfer.objects.update(created_at=made[0].created_at)

    results = user_client.get(transfers_url(user)).json()["results"]

    assert [t["id"] for t in results] == [t.pk for t in reversed(made)]


def test_an_empty_ledger_is_an_empty_page(user_client, user):
    response = user_client.get(transfers_url(user))

    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_a_transfer_refreshes_the_cached_account_detail(
    user_client, user, django_capture_on_commit_callbacks
):
    assert user_client.get(f"/users/{user.username}/").json()["balance"] == "10000.00"

    with django_capture_on_commit_callbacks(execute=True):
        user_client.post(transfers_url(user), {"direction": "withdrawal", "amount": "0.50"})

    assert user_client.get(f"/users/{user.username}/").json()["balance"] == "9999.50"


def test_the_list_takes_a_fixed_number_of_queries(user_client, user, django_assert_num_queries):
    for _ in range(5):
        transfer_create(user=user, direction=DEPOSIT, amount=Decimal("1"))

    # token + user, count, the page with its user
    with django_assert_num_queries(3):
        response = user_client.get(transfers_url(user))

    assert len(response.json()["results"]) == 5


# --- the admin -----------------------------------------------------------------------------


@pytest.fixture
def operator_client(client):
    operator = UserFactory(username="root-op", is_staff=True, is_superuser=True)
    client.force_login(operator)
    return client


def test_the_transfer_admin_pages_render(operator_client, user):
    transfer = transfer_create(user=user, direction=DEPOSIT, amount=Decimal("1"))

    for url in (
        "/admin/transactions/transfer/",
        "/admin/transactions/transfer/?direction__exact=deposit",
        f"/admin/transactions/transfer/?q={user.username}",
        "/admin/transactions/transfer/add/",
        f"/admin/transactions/transfer/{transfer.pk}/change/",
    ):
        assert operator_client.get(url).status_code == 200, url


def test_a_transfer_added_in_the_admin_goes_through_the_service(operator_client, user):
    with mock.patch(
        "transactions.admin.transfer_create", wraps=services.transfer_create
    ) as service:
        response = operator_client.post(
            "/admin/transactions/transfer/add/",
            {"user": user.pk, "direction": "withdrawal", "amount": "2500.25"},
        )

    assert response.status_code == 302, response.content
    service.assert_called_once_with(user=user, direction="withdrawal", amount=Decimal("2500.25"))
    transfer = Transfer.objects.get()
    assert (transfer.amount, transfer.balance_after) == (Decimal("2500.25"), Decimal("7499.75"))
    assert balance_of(user) == Decimal("7499.75")
    assert response.url == "/admin/transactions/transfer/"


def test_the_admin_shows_a_refused_transfer_on_the_form_and_changes_nothing(operator_client, user):
    over = operator_client.post(
        "/admin/transactions/transfer/add/",
        {"user": user.pk, "direction": "withdrawal", "amount": "10000.01"},
    )
    zero = operator_client.post(
        "/admin/transactions/transfer/add/",
        {"user": user.pk, "direction": "deposit", "amount": "0"},
    )

    assert over.status_code == zero.status_code == 200
    assert over.context["adminform"].form.non_field_errors() == [
        "This needs 10000.01 of buying power; 10000.00 is available."
    ]
    assert zero.context["adminform"].form.errors == {"amount": [AMOUNT_RULE]}
    assert balance_of(user) == Decimal("10000.00")
    assert not Transfer.objects.exists()


def test_transfers_cannot_be_changed_or_deleted_in_the_admin(operator_client, user):
    transfer = transfer_create(user=user, direction=DEPOSIT, amount=Decimal("1"))

    page = operator_client.get(f"/admin/transactions/transfer/{transfer.pk}/change/")
    changed = operator_client.post(
        f"/admin/transactions/transfer/{transfer.pk}/change/",
        {"user": user.pk, "direction": "deposit", "amount": "1000"},
    )
    deleted = operator_client.post(
        f"/admin/transactions/transfer/{transfer.pk}/delete/", {"post": "yes"}
    )

    assert "amount" in page.context["adminform"].readonly_fields
    assert (changed.status_code, deleted.status_code) == (403, 403)
    assert Transfer.objects.get().amount == Decimal("1.00")
    assert balance_of(user) == Decimal("10001.00")
