"""Hardening: body size limit, throttling with Retry-After, login guessing, deploy checks."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.throttling import SimpleRateThrottle

from conftest import client_for
from stocks.tests.factories import StockDataFactory
from transactions.models import Transaction
from users.models import User
from users.tests.factories import UserFactory

BASE_DIR = Path(__file__).resolve().parents[2]
LOGIN = {"username": "guessed", "password": "wrong-password"}


@pytest.fixture
def rates(monkeypatch):
    """Set throttle rates for one test (DRF reads them once, at import)."""

    def set_rates(**new):
        monkeypatch.setattr(
            SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **new}
        )

    return set_rates


@pytest.mark.django_db
def test_a_body_over_the_size_limit_is_refused_with_413_and_stores_nothing(staff_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"username": "big", "balance": "1.00", "password": "' + "x" * 2000 + '"}'

    response = staff_client.post("/users/", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body exceeds 1000 bytes.",
        "code": "request_too_large",
    }
    assert not User.objects.filter(username="big").exists()


@pytest.mark.django_db
def test_anonymous_clients_are_throttled_with_retry_after(api_client, rates):
    rates(anon="3/min")
    StockDataFactory(ticker="AAPL")

    statuses = [api_client.get("/stocks/").status_code for _ in range(4)]
    throttled = api_client.get("/stocks/AAPL/")

    assert statuses == [200, 200, 200, 429]
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "throttled"
    assert 1 <= int(throttled["Retry-After"]) <= 60


@pytest.mark.django_db
def test_authenticated_clients_are_throttled_per_account(rates):
    rates(user="2/min")
    StockDataFactory(ticker="AAPL")
    first, second = UserFactory(), UserFactory()
    order = {"ticker": "AAPL", "transaction_type": "buy", "transaction_volume": 1}

    statuses = [client_for(first).post("/transactions/", order).status_code for _ in range(3)]
    other = client_for(second).post("/transactions/", order)

    assert statuses == [201, 201, 429]
    assert other.status_code == 201
    assert Transaction.objects.count() == 3


@pytest.mark.django_db
def test_the_health_check_is_never_throttled(api_client, rates):
    rates(anon="1/min")

    assert [api_client.get("/health/").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.django_db
def test_failed_token_logins_are_throttled_but_correct_ones_are_not(api_client, rates):
    rates(login_failures="3/min")
    UserFactory(username="guessed", password="right-password-123")

    good = [
        api_client.post("/auth/token/", {**LOGIN, "password": "right-password-123"}).status_code
        for _ in range(5)
    ]
    bad = [api_client.post("/auth/token/", LOGIN).status_code for _ in range(4)]
    locked = api_client.post("/auth/token/", {**LOGIN, "password": "right-password-123"})

    assert good == [200] * 5
    assert bad == [400, 400, 400, 429]
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) >= 1


@pytest.mark.django_db
def test_failed_admin_logins_are_throttled(client, rates):
    rates(login_failures="2/min")
    UserFactory(username="guessed", is_staff=True, password="right-password-123")

    statuses = [client.post("/admin/login/", LOGIN).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]  # the admin re-renders its form on a failure


@pytest.mark.django_db
def test_a_correct_admin_login_still_works(client):
    UserFactory(username="operator", is_staff=True, password="right-password-123")

    response = client.post(
        "/admin/login/", {"username": "operator", "password": "right-password-123"}
    )

    assert (response.status_code, response["Location"]) == (302, "/admin/")


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DJANGO_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "stockflow.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_is_clean_once_the_https_settings_are_set():
    result = run_manage(
        *("check", "--deploy", "--fail-level", "WARNING"),
        DATABASE_URL="postgres://root@127.0.0.1:5432/unused",
        REDIS_URL="redis://127.0.0.1:6379/12",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="api.example.com",
        SECURE_SSL_REDIRECT="True",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="True",
        SECURE_HSTS_PRELOAD="True",
        SESSION_COOKIE_SECURE="True",
        CSRF_COOKIE_SECURE="True",
        DEBUG="False",
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_real_system_refuses_to_start_without_a_secret_key():
    result = run_manage(
        "check",
        DATABASE_URL="postgres://root@127.0.0.1:5432/unused",
        REDIS_URL="redis://127.0.0.1:6379/12",
        SECRET_KEY="",
    )

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


@pytest.mark.django_db
def test_an_empty_rate_switches_the_throttles_off(api_client, rates):
    rates(anon=None, login_failures=None)
    UserFactory(username="guessed", password="right-password-123")

    reads = [api_client.get("/stocks/").status_code for _ in range(5)]
    logins = [api_client.post("/auth/token/", LOGIN).status_code for _ in range(12)]

    assert reads == [200] * 5
    assert logins == [400] * 12


def test_an_empty_throttle_variable_means_no_throttle():
    result = run_manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'])",
        THROTTLE_ANON="",
        THROTTLE_USER="",
        THROTTLE_LOGIN_FAILURES="",
    )

    assert result.returncode == 0, result.stderr
    assert "{'anon': None, 'user': None, 'login_failures': None}" in result.stdout
