"""The token -> account cache: a hit costs no query, and no change to a token or an account
is missed, nor is money ever read from it."""

from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token

from conftest import client_for
from stocks.tests.factories import StockDataFactory
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_cached_token_stops_working_when_its_account_is_deactivated():
    user = UserFactory()
    client = client_for(user)
    assert client.get(f"/users/{user.username}/").status_code == 200

    user.is_active = False
    user.save()

    assert client.get(f"/users/{user.username}/").status_code == 401


def test_a_deleted_token_is_refused_at_once_though_it_was_cached():
    user = UserFactory()
    client = client_for(user)
    assert client.get(f"/users/{user.username}/").status_code == 200

    Token.objects.filter(user=user).delete()

    assert client.get(f"/users/{user.username}/").status_code == 401


def test_an_account_demoted_from_staff_loses_staff_access_at_once():
    staff = UserFactory(is_staff=True)
    client = client_for(staff)
    assert client.get("/users/").status_code == 200

    staff.is_staff = False
    staff.save()

    assert client.get("/users/").status_code == 403


def test_the_cached_account_reads_its_balance_from_the_database():
    user = UserFactory(balance=Decimal("100.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    client = client_for(user)
    assert client.get(f"/users/{user.username}/portfolio/").json()["balance"] == "100.00"

    # As settlement writes it: an UPDATE, no model save, no signal, no cache change.
    User.objects.filter(pk=user.pk).update(balance=Decimal("55.55"), reserved=Decimal("5.00"))

    portfolio = client.get(f"/users/{user.username}/portfolio/").json()
    assert (portfolio["balance"], portfolio["reserved"]) == ("55.55", "5.00")
    assert portfolio["buying_power"] == "50.55"


def test_a_write_authenticates_against_the_database_not_the_cache():
    user = UserFactory(balance=Decimal("100.00"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    client = client_for(user)
    assert client.get(f"/users/{user.username}/").status_code == 200
    # Deactivated without a signal, so the cached entry survives: reads may still pass for
    # up to CACHE_TTL, but an order is checked against the row.
    User.objects.filter(pk=user.pk).update(is_active=False)

    order = {"ticker": "ACME", "transaction_type": "buy", "transaction_volume": 1}
    assert client.post("/transactions/", order, format="json").status_code == 401
