"""Outages: a dead Redis degrades cached reads to the database; a dead database is a 503."""

import shutil
import time
from decimal import Decimal

import pytest
from django.db import OperationalError, connection

from conftest import client_for
from stockflow.settings import redis_cache_config
from stocks.tests.factories import StockDataFactory
from users.tests.factories import UserFactory

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


@pytest.mark.django_db
def test_reads_fall_back_to_the_database_when_redis_dies(own_redis, settings):
    settings.CACHES = {"default": redis_cache_config(own_redis.url(0), "outage-test")}
    user = UserFactory(balance=Decimal("12.34"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    client = client_for(user)
    assert client.get(f"/users/{user.username}/").json()["balance"] == "12.34"
    assert client.get("/stocks/ACME/").json()["close_price"] == "10.0000"

    own_redis.kill()
    started = time.monotonic()
    detail = client.get(f"/users/{user.username}/")
    quote = client.get("/stocks/ACME/")
    listing = client.get("/stocks/")
    health = client.get("/health/")
    elapsed = time.monotonic() - started

    assert (detail.status_code, detail.json()["balance"]) == (200, "12.34")
    assert (quote.status_code, quote.json()["close_price"]) == (200, "10.0000")
    assert [q["ticker"] for q in listing.json()] == ["ACME"]
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["checks"]["cache"] == "unavailable"
    assert elapsed < 3  # short socket timeouts: a dead Redis costs milliseconds, not hangs


@pytest.mark.django_db
def test_health_answers_503_down_when_the_database_is_unreachable(api_client, monkeypatch):
    def refuse():
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(connection, "cursor", refuse)

    response = api_client.get("/health/")

    assert response.status_code == 503
    assert response.json()["status"] == "down"
    assert response.json()["checks"]["database"] == "unavailable: OperationalError"
