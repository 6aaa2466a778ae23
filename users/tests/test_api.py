"""HTTP tests for /users/: registration, listing and account detail."""

from decimal import Decimal

import pytest
from rest_framework import serializers
from rest_framework.authtoken.models import Token

from conftest import client_for
from users.models import User
from users.tests.factories import UserFactory

iso = serializers.DateTimeField().to_representation

NOT_AUTHENTICATED = {
    "detail": "Authentication credentials were not provided.",
    "code": "not_authenticated",
}
NOT_STAFF = {
    "detail": "You do not have permission to perform this action.",
    "code": "permission_denied",
}
NOT_YOURS = {"detail": "You may only access your own account.", "code": "permission_denied"}


def detail_of(user: User) -> dict:
    return {
        "id": user.pk,
        "username": user.username,
        "balance": f"{user.balance:.2f}",
        "reserved": "0.00",  # nothing here places conditional orders
        "buying_power": f"{user.balance:.2f}",
        "created_at": iso(user.created_at),
    }


# --- POST /users/ ------------------------------------------------------------------------


@pytest.mark.django_db
def test_registration_returns_the_account_with_its_token(api_client):
    response = api_client.post("/users/", {"username": "alice", "balance": "1500.50"})

    assert response.status_code == 201, response.content
    alice = User.objects.get(username="alice")
    assert response.json() == {
        **detail_of(alice),
        "token": Token.objects.get(user=alice).key,
    }
    assert response.json()["balance"] == "1500.50"
    assert alice.balance == Decimal("1500.50")
    assert alice.is_staff is False


@pytest.mark.django_db
def test_the_token_from_registration_authenticates_and_is_not_shown_again(api_client):
    token = api_client.post("/users/", {"username": "alice", "balance": "10"}).json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    response = api_client.get("/users/alice/")

    assert response.status_code == 200
    assert "token" not in response.json()
    assert response.json()["balance"] == "10.00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("balance", "stored"),
    [
        (0, "0.00"),
        ("0", "0.00"),
        (100, "100.00"),
        (Decimal("100.5"), "100.50"),
        ("100.5", "100.50"),
        ("  42.10 ", "42.10"),
        ("999999999999.99", "999999999999.99"),
    ],
)
def test_registration_accepts_the_balance_as_a_number_or_a_string(api_client, balance, stored):
    response = api_client.post("/users/", {"username": "alice", "balance": balance})

    assert response.status_code == 201, response.content
    assert response.json()["balance"] == stored
    assert User.objects.get(username="alice").balance == Decimal(stored)


# As written in the JSON body: strings, and numbers (the parser reads -0.0 as Decimal("-0.0")).
@pytest.mark.django_db
@pytest.mark.parametrize("balance", ['"-0"', '"-0.00"', '"-0e3"', '" -0.0 "', "-0", "-0.0", "-0e3"])
def test_a_negative_zero_balance_is_stored_and_shown_as_zero(api_client, balance):
    response = api_client.post(
        "/users/", f'{{"username": "alice", "balance": {balance}}}', content_type="application/json"
    )

    assert (response.status_code, response.json()["balance"]) == (201, "0.00")
    client = client_for(User.objects.get(username="alice"))
    assert client.get("/users/alice/").json()["balance"] == "0.00"
    assert str(User.objects.get(username="alice").balance) == "0.00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("balance", "messages"),
    [
        ("-0.01", ["Ensure this value is greater than or equal to 0."]),
        (-1, ["Ensure this value is greater than or equal to 0."]),
        ("1000000000000", ["Ensure this value is less than 1000000000000."]),
        ("1000000000000.00", ["Ensure this value is less than 1000000000000."]),
        ("1.001", ["Ensure that there are no more than 2 decimal places."]),
        (Decimal("0.125"), ["Ensure that there are no more than 2 decimal places."]),
        ("abc", ["A valid number is required."]),
        ("", ["A valid number is required."]),
        ("NaN", ["A valid number is required."]),
        ("Infinity", ["A valid number is required."]),
        (True, ["A valid number is required."]),
        (None, ["This field may not be null."]),
        ("1e30", ["Ensure that there are no more than 15 digits in total."]),
        # Decimal() reads both: underscores and Arabic-Indic digits are not money input.
        ("1_000", ["A valid number is required."]),
        ("\u0661\u0662", ["A valid number is required."]),
        ([], ["A valid number is required."]),
    ],
)
def test_registration_rejects_a_bad_balance(api_client, balance, messages):
    response = api_client.post("/users/", {"username": "alice", "balance": balance})

    assert response.status_code == 400
    assert response.json() == {"balance": messages}
    assert not User.objects.exists()


@pytest.mark.django_db
def test_registration_requires_username_and_balance(api_client):
    response = api_client.post("/users/", {})

    assert response.status_code == 400
    assert response.json() == {
        "username": ["This field is required."],
        "balance": ["This field is required."],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "username",
    [
        *("", "has space", "semi;colon", "x' OR '1'='1", "slash/name", "a" * 151, "💥"),
        *(" alice", "alice\n", 12345, True, ["alice"]),  # only a JSON string, as sent
    ],
)
def test_registration_rejects_a_bad_username(api_client, username):
    response = api_client.post("/users/", {"username": username, "balance": "1"})

    assert response.status_code == 400
    assert list(response.json()) == ["username"]
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("taken", ["alice", "ALICE", "Alice"])
def test_registration_with_a_taken_username_is_a_conflict(api_client, taken):
    UserFactory(username="alice")

    response = api_client.post("/users/", {"username": taken, "balance": "1"})

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Username '{taken}' is already taken.",
        "code": "duplicate_username",
    }
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_a_user_who_set_a_password_can_obtain_the_token(api_client):
    registered = api_client.post(
        "/users/", {"username": "alice", "balance": "1", "password": "correct-horse-battery"}
    ).json()

    response = api_client.post(
        "/auth/token/", {"username": "alice", "password": "correct-horse-battery"}
    )

    assert response.status_code == 200
    assert response.json() == {"token": registered["token"]}
    assert "password" not in registered


@pytest.mark.django_db
def test_a_password_is_kept_as_typed_spaces_and_all(api_client):
    password = "  correct horse battery  "
    registered = api_client.post(
        "/users/", {"username": "alice", "balance": "1", "password": password}
    ).json()

    exact = api_client.post("/auth/token/", {"username": "alice", "password": password})
    trimmed = api_client.post("/auth/token/", {"username": "alice", "password": password.strip()})

    assert exact.status_code == 200
    assert exact.json() == {"token": registered["token"]}
    assert trimmed.status_code == 400


@pytest.mark.django_db
def test_a_user_registered_without_a_password_cannot_obtain_a_token_by_password(api_client):
    api_client.post("/users/", {"username": "alice", "balance": "1"})

    response = api_client.post("/auth/token/", {"username": "alice", "password": "guess-this-1"})

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
    assert User.objects.get(username="alice").has_usable_password() is False


@pytest.mark.django_db
def test_the_token_endpoint_refuses_a_wrong_password(api_client):
    UserFactory(username="alice")

    response = api_client.post("/auth/token/", {"username": "alice", "password": "wrong"})

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}


@pytest.mark.django_db
def test_registration_refuses_a_weak_password(api_client):
    response = api_client.post("/users/", {"username": "alice", "balance": "1", "password": "123"})

    assert response.status_code == 400
    assert response.json() == {
        "password": [
            "This password is too short. It must contain at least 8 characters.",
            "This password is too common.",
            "This password is entirely numeric.",
        ]
    }
    assert not User.objects.exists()


@pytest.mark.django_db
def test_registration_ignores_privileged_and_read_only_fields(api_client):
    response = api_client.post(
        "/users/",
        {
            "username": "mallory",
            "balance": "5.00",
            "is_staff": True,
            "is_superuser": True,
            # Beyond any id this run's sequence reaches (999 once came up by itself).
            "id": 2_000_000_000,
            "token": "0" * 40,
            "created_at": "2000-01-01T00:00:00Z",
            "user_permissions": [1, 2, 3],
        },
    )

    assert response.status_code == 201
    mallory = User.objects.get(username="mallory")
    assert (mallory.is_staff, mallory.is_superuser) == (False, False)
    assert mallory.user_permissions.count() == 0
    assert mallory.pk != 2_000_000_000
    assert response.json()["token"] != "0" * 40
    assert response.json()["created_at"] != "2000-01-01T00:00:00Z"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "patch"])
def test_the_balance_cannot_be_changed_over_the_api(user, method):
    response = getattr(client_for(user), method)(
        f"/users/{user.username}/", {"balance": "99999999.00", "is_staff": True}
    )

    assert response.status_code == 405
    assert response.json() == {
        "detail": f'Method "{method.upper()}" not allowed.',
        "code": "method_not_allowed",
    }
    user.refresh_from_db()
    assert (user.balance, user.is_staff) == (Decimal("10000.00"), False)


# --- GET /users/ -------------------------------------------------------------------------


@pytest.mark.django_db
def test_listing_users_needs_authentication(api_client):
    response = api_client.get("/users/")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_listing_users_is_for_staff_only(user_client):
    response = user_client.get("/users/")

    assert response.status_code == 403
    assert response.json() == NOT_STAFF


@pytest.mark.django_db
def test_staff_list_all_users_paginated_in_id_order(staff_client, staff):
    traders = UserFactory.create_batch(3)

    response = staff_client.get("/users/")

    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "next": None,
        "previous": None,
        "results": [detail_of(u) for u in [staff, *traders]],
    }


@pytest.mark.django_db
def test_staff_page_through_users_with_limit_and_offset(staff_client, staff):
    traders = UserFactory.create_batch(3)

    response = staff_client.get("/users/?limit=2&offset=1")

    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "next": "http://testserver/users/?limit=2&offset=3",
        "previous": "http://testserver/users/?limit=2",
        "results": [detail_of(u) for u in traders[:2]],
    }


# --- GET /users/{username}/ --------------------------------------------------------------


@pytest.mark.django_db
def test_a_user_reads_their_own_account(user_client, user):
    response = user_client.get(f"/users/{user.username}/")

    assert response.status_code == 200
    assert response.json() == detail_of(user)
    assert response.json()["balance"] == "10000.00"


@pytest.mark.django_db
def test_a_repeated_account_read_is_served_from_the_cache(
    user_client, user, django_assert_num_queries
):
    first = user_client.get(f"/users/{user.username}/")

    with django_assert_num_queries(0):  # the token's account and the detail: both cached
        second = user_client.get(f"/users/{user.username}/")

    assert second.json() == first.json() == detail_of(user)


@pytest.mark.django_db
def test_a_user_cannot_read_another_account(user_client):
    other = UserFactory()

    response = user_client.get(f"/users/{other.username}/")

    assert response.status_code == 403
    assert response.json() == NOT_YOURS


@pytest.mark.django_db
def test_a_user_asking_for_an_unknown_account_gets_403_not_a_hint_it_is_free(user_client):
    response = user_client.get("/users/ghost/")

    assert response.status_code == 403
    assert response.json() == NOT_YOURS


@pytest.mark.django_db
def test_staff_read_any_account(staff_client, user):
    response = staff_client.get(f"/users/{user.username}/")

    assert response.status_code == 200
    assert response.json() == detail_of(user)


@pytest.mark.django_db
def test_staff_get_404_for_an_unknown_account(staff_client):
    response = staff_client.get("/users/ghost/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No user 'ghost'.", "code": "unknown_user"}


@pytest.mark.django_db
def test_reading_an_account_needs_authentication(api_client, user):
    response = api_client.get(f"/users/{user.username}/")

    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


@pytest.mark.django_db
def test_an_invalid_token_is_refused(api_client, user):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = api_client.get(f"/users/{user.username}/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token.", "code": "authentication_failed"}


@pytest.mark.django_db
def test_usernames_with_dots_and_at_signs_resolve(api_client):
    jane = UserFactory(username="jane.doe@example.com")

    response = client_for(jane).get("/users/jane.doe@example.com/")

    assert response.status_code == 200
    assert response.json()["username"] == "jane.doe@example.com"


@pytest.mark.django_db
def test_the_cached_account_shows_the_balance_after_a_trade_settles(
    user_client, user, quote, django_capture_on_commit_callbacks
):
    assert user_client.get(f"/users/{user.username}/").json()["balance"] == "10000.00"

    with django_capture_on_commit_callbacks(execute=True):
        user_client.post(
            "/transactions/", {"ticker": "AAPL", "transaction_type": "buy", "transaction_volume": 2}
        )

    assert user_client.get(f"/users/{user.username}/").json()["balance"] == "9700.00"
