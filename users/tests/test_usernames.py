"""Usernames are unique regardless of case, in the database: races, reads, logins, migration."""

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.authtoken.models import Token

from stockflow.cache import bump, user_namespace
from users.models import User
from users.services import user_register

# 20 spellings of one name: racex, Racex, rAcex, ...
CASE_VARIANTS = [
    "".join(letters)
    for letters in itertools.islice(itertools.product(*((c, c.upper()) for c in "racex")), 20)
]


def test_20_racing_registrations_of_case_variants_create_exactly_one_account(
    transactional_db, live_server
):
    if connection.vendor != "postgresql":
        pytest.skip("the race is decided by PostgreSQL's unique index")
    start = threading.Barrier(len(CASE_VARIANTS))

    def register(username):
        with requests.Session() as session:
            start.wait()
            return session.post(
                f"{live_server.url}/users/", json={"username": username, "balance": "100.00"}
            )

    with ThreadPoolExecutor(max_workers=len(CASE_VARIANTS)) as pool:
        responses = list(pool.map(register, CASE_VARIANTS))

    assert len(set(CASE_VARIANTS)) == 20
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    winner = next(r.json() for r in responses if r.status_code == 201)
    losers = [
        (r.json(), name)
        for r, name in zip(responses, CASE_VARIANTS, strict=True)
        if r.status_code == 409
    ]
    assert all(
        body == {"detail": f"Username '{name}' is already taken.", "code": "duplicate_username"}
        for body, name in losers
    )
    assert list(User.objects.values_list("id", "username")) == [(winner["id"], winner["username"])]
    assert Token.objects.count() == 1


@pytest.mark.django_db
def test_reads_and_logins_by_any_case_of_the_name_find_the_one_account(api_client):
    user = user_register(username="Racex", balance=Decimal("100.00"), password="correct-horse-42")
    token = user.auth_token.key

    for spelling in ("Racex", "racex", "RACEX", "rAcEx"):
        login = api_client.post(
            "/auth/token/", {"username": spelling, "password": "correct-horse-42"}
        )
        assert (login.status_code, login.json()) == (200, {"token": token})
        api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        detail = api_client.get(f"/users/{spelling}/")
        assert (detail.status_code, detail.json()["id"], detail.json()["username"]) == (
            200,
            user.pk,
            "Racex",
        )
        portfolio = api_client.get(f"/users/{spelling}/portfolio/")
        assert (portfolio.status_code, portfolio.json()["username"]) == (200, "Racex")
        api_client.credentials()


@pytest.mark.django_db
def test_staff_find_an_account_by_any_case_of_its_name(staff_client):
    user = user_register(username="Quinn", balance=Decimal("7.00"))

    response = staff_client.get("/users/QUINN/")

    assert (response.status_code, response.json()["id"]) == (200, user.pk)


@pytest.mark.django_db
def test_the_cached_detail_of_any_spelling_is_dropped_when_the_balance_changes(api_client):
    user = user_register(username="Casey", balance=Decimal("100.00"))
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    assert api_client.get("/users/CASEY/").json()["balance"] == "100.00"

    User.objects.filter(pk=user.pk).update(balance=Decimal("42.00"))
    bump(user_namespace(user.username))  # what settlement does after its commit

    assert api_client.get("/users/CASEY/").json()["balance"] == "42.00"
    assert api_client.get("/users/casey/").json()["balance"] == "42.00"


def test_the_migration_names_the_accounts_that_differ_only_in_case(transactional_db):
    executor = MigrationExecutor(connection)
    before = [("users", "0001_initial")]
    executor.migrate(before)
    # The model as it was then: later migrations added columns this schema lacks.
    OldUser = (
        MigrationExecutor(connection).loader.project_state(before).apps.get_model("users", "User")
    )
    try:
        first = OldUser.objects.create(username="Dana", balance=Decimal("1.00"))
        second = OldUser.objects.create(username="DANA", balance=Decimal("2.00"))
        OldUser.objects.create(username="erin", balance=Decimal("3.00"))

        with pytest.raises(RuntimeError) as exc_info:
            MigrationExecutor(connection).migrate([("users", "0002_username_unique_any_case")])

        message = str(exc_info.value)
        assert f"id={first.pk} username='Dana', id={second.pk} username='DANA'" in message
        assert "erin" not in message
        assert OldUser.objects.count() == 3  # nothing merged, renamed or deleted
    finally:
        OldUser.objects.filter(username="DANA").delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    with pytest.raises(IntegrityError, match="user_username_unique_any_case"):
        User.objects.create(username="dAnA", balance=Decimal("0.00"))
