"""One account per name: every spelling with the same canonical form (NFKC, case folded) is
that account, in the database: races, registration, reads, logins, the cache, migrations."""

import itertools
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from urllib.parse import quote

import pytest
import requests
from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.authtoken.models import Token

from conftest import client_for
from stockflow.cache import bump, user_namespace
from stockflow.text import canonical_username
from users.models import User
from users.services import user_register

# 20 spellings of one name: racex, Racex, rAcex, ...
CASE_VARIANTS = [
    "".join(letters)
    for letters in itertools.islice(itertools.product(*((c, c.upper()) for c in "racex")), 20)
]
# 20 spellings of another: nik and a small, final or capital sigma, with some letters
# full-width, which LOWER(username) took for several names.
SIGMA_VARIANTS = [
    "".join(letters)
    for letters in itertools.islice(
        itertools.product(
            "nN\uff4e\uff2e", "iI\uff49\uff29", "kK\uff4b\uff2b", "\u03c3\u03c2\u03a3"
        ),
        20,
    )
]
# Pairs of spellings of one name that neither str.lower() nor PostgreSQL's LOWER equate.
SAME_NAME = [
    ("nikς", "nikΣ"),
    ("straße", "STRASSE"),
    ("\uff4e\uff49\uff4b", "nik"),  # full-width
    ("e\u0301mile", "\u00e9mile"),
]


def race_registrations(live_server, names: list[str]) -> None:
    """Register every name at once; exactly one wins, the others get 409 naming their name."""
    if connection.vendor != "postgresql":
        pytest.skip("the race is decided by PostgreSQL's unique index")
    start = threading.Barrier(len(names))

    def register(username):
        with requests.Session() as session:
            start.wait()
            return session.post(
                f"{live_server.url}/users/", json={"username": username, "balance": "100.00"}
            )

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        responses = list(pool.map(register, names))

    assert len(set(names)) == 20
    assert sorted(r.status_code for r in responses) == [201] + [409] * 19
    winner = next(r.json() for r in responses if r.status_code == 201)
    losers = [
        (r.json(), name) for r, name in zip(responses, names, strict=True) if r.status_code == 409
    ]
    assert all(
        body == {"detail": f"Username '{name}' is already taken.", "code": "duplicate_username"}
        for body, name in losers
    )
    assert list(User.objects.values_list("id", "username")) == [(winner["id"], winner["username"])]
    assert Token.objects.count() == 1


def test_20_racing_registrations_of_case_variants_create_exactly_one_account(
    transactional_db, live_server
):
    race_registrations(live_server, CASE_VARIANTS)


def test_20_racing_registrations_of_sigma_and_width_variants_create_exactly_one_account(
    transactional_db, live_server
):
    race_registrations(live_server, SIGMA_VARIANTS)


@pytest.mark.django_db
def test_nik_with_a_final_sigma_then_a_capital_sigma_is_201_then_409(api_client):
    first = api_client.post("/users/", {"username": "nikς", "balance": "1.00"})
    second = api_client.post("/users/", {"username": "nikΣ", "balance": "1.00"})

    assert first.status_code == 201
    assert (second.status_code, second.json()) == (
        409,
        {"detail": "Username 'nikΣ' is already taken.", "code": "duplicate_username"},
    )
    assert list(User.objects.values_list("username", flat=True)) == ["nikς"]


@pytest.mark.django_db
@pytest.mark.parametrize(("registered", "other"), [*SAME_NAME, *((b, a) for a, b in SAME_NAME)])
def test_every_spelling_of_a_name_finds_the_one_account(api_client, registered, other):
    created = api_client.post(
        "/users/", {"username": registered, "balance": "5.00", "password": "correct-horse-42"}
    )
    assert created.status_code == 201, created.content
    token = created.json()["token"]

    again = api_client.post("/users/", {"username": other, "balance": "5.00"})
    login = api_client.post("/auth/token/", {"username": other, "password": "correct-horse-42"})
    owner = client_for(User.objects.get())
    detail = owner.get(f"/users/{quote(other)}/")
    portfolio = owner.get(f"/users/{quote(other)}/portfolio/")

    assert (again.status_code, again.json()["code"]) == (409, "duplicate_username")
    assert (login.status_code, login.json()) == (200, {"token": token})
    assert (detail.status_code, detail.json()["id"]) == (200, created.json()["id"])
    assert detail.json()["username"] == registered  # shown as typed
    assert (portfolio.status_code, portfolio.json()["username"]) == (200, registered)
    assert User.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("registered", "other"), SAME_NAME)
def test_every_spelling_of_a_name_shares_one_cached_detail(registered, other):
    user = user_register(username=registered, balance=Decimal("100.00"))
    client = client_for(user)
    assert client.get(f"/users/{quote(registered)}/").json()["balance"] == "100.00"

    User.objects.filter(pk=user.pk).update(balance=Decimal("42.00"))
    # Without an invalidation the other spelling is served the same cached entry ...
    assert client.get(f"/users/{quote(other)}/").json()["balance"] == "100.00"
    bump(user_namespace(other))  # ... and invalidating by either spelling drops it for both.

    assert client.get(f"/users/{quote(registered)}/").json()["balance"] == "42.00"
    assert client.get(f"/users/{quote(other)}/").json()["balance"] == "42.00"


def test_the_canonical_form_of_every_character_is_a_fixed_point():
    # NFKC after folding alone is not: "\u1d2c" (a modifier capital A) would become "A".
    for code in range(sys.maxunicode + 1):
        if not 0xD800 <= code <= 0xDFFF:
            once = canonical_username(chr(code))
            assert canonical_username(once) == once, hex(code)


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

    with pytest.raises(IntegrityError, match="username_canonical"):
        User.objects.create(username="dAnA", balance=Decimal("0.00"))


def test_the_migration_to_canonical_names_names_the_accounts_that_share_one(transactional_db):
    executor = MigrationExecutor(connection)
    before = [("users", "0003_reserved_cash")]
    executor.migrate(before)
    OldUser = (
        MigrationExecutor(connection).loader.project_state(before).apps.get_model("users", "User")
    )
    try:
        names = ["nikς", "STRASSE", "nikΣ", "straße", "erin"]
        ids = {
            name: OldUser.objects.create(username=name, balance=Decimal("1.00")).pk
            for name in names
        }

        with pytest.raises(RuntimeError) as exc_info:
            MigrationExecutor(connection).migrate([("users", "0004_username_canonical")])

        message = str(exc_info.value)
        assert f"id={ids['nikς']} username='nikς', id={ids['nikΣ']} username='nikΣ'" in message
        assert (
            f"id={ids['STRASSE']} username='STRASSE', id={ids['straße']} username='straße'"
            in message
        )
        assert "erin" not in message
        assert OldUser.objects.count() == 5  # nothing merged, renamed or deleted
    finally:
        OldUser.objects.filter(username__in=["nikΣ", "straße"]).delete()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert dict(User.objects.values_list("username", "username_canonical")) == {
        "nikς": "nik\u03c3",
        "STRASSE": "strasse",
        "erin": "erin",
    }
