"""Outages: a dead Redis degrades cached reads to the database; a dead database is a 503."""

import shutil
import socket
import subprocess
import time
from decimal import Decimal

import pytest
import redis
from django.db import OperationalError, connection

from conftest import client_for
from stockflow.settings import redis_cache_config
from stocks.tests.factories import StockDataFactory
from users.tests.factories import UserFactory

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own on a free port, so the test may stop it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield process, f"redis://127.0.0.1:{port}/0"
    process.kill()
    process.wait()


@pytest.mark.django_db
def test_reads_fall_back_to_the_database_when_redis_dies(own_redis, settings):
    process, url = own_redis
    settings.CACHES = {"default": redis_cache_config(url, "outage-test")}
    user = UserFactory(balance=Decimal("12.34"))
    StockDataFactory(ticker="ACME", close_price=Decimal("10.0000"))
    client = client_for(user)
    assert client.get(f"/users/{user.username}/").json()["balance"] == "12.34"
    assert client.get("/stocks/ACME/").json()["close_price"] == "10.0000"

    process.kill()
    process.wait()
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
