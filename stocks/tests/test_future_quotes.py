"""No quotes from the future: a timestamp past QUOTE_MAX_FUTURE_SECONDS is refused everywhere."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from stockflow.exceptions import status_of
from stocks.errors import QuoteFromTheFuture
from stocks.models import StockData
from stocks.services import quote_timestamp_check, quotes_ingest
from stocks.tests.factories import StockDataFactory
from stocks.tests.test_api import iso, quote_body
from users.tests.factories import UserFactory

FUTURE_ERROR = "A quote may be at most 300 seconds ahead of the server's clock."


@pytest.fixture(autouse=True)
def _five_minutes(settings):
    settings.QUOTE_MAX_FUTURE_SECONDS = 300


def test_a_timestamp_exactly_at_the_limit_passes_and_a_microsecond_later_is_refused():
    now = timezone.now()

    quote_timestamp_check(timestamp=now + timedelta(seconds=300), now=now)
    with pytest.raises(QuoteFromTheFuture) as exc_info:
        quote_timestamp_check(timestamp=now + timedelta(seconds=300, microseconds=1), now=now)

    assert (exc_info.value.code, exc_info.value.field, str(exc_info.value)) == (
        "quote_from_the_future",
        "timestamp",
        FUTURE_ERROR,
    )
    assert status_of(exc_info.value) == 400


def test_the_limit_comes_from_settings(settings):
    settings.QUOTE_MAX_FUTURE_SECONDS = 0
    now = timezone.now()

    quote_timestamp_check(timestamp=now, now=now)
    with pytest.raises(QuoteFromTheFuture, match="at most 0 seconds"):
        quote_timestamp_check(timestamp=now + timedelta(microseconds=1), now=now)


def test_the_api_stores_a_quote_just_inside_the_limit(staff_client):
    timestamp = timezone.now() + timedelta(seconds=290)

    response = staff_client.post("/stocks/", quote_body(timestamp=iso(timestamp)))

    assert response.status_code == 201
    assert StockData.objects.get().timestamp == timestamp


def test_the_api_refuses_a_quote_just_past_the_limit_and_stores_nothing(staff_client):
    timestamp = timezone.now() + timedelta(seconds=310)

    response = staff_client.post("/stocks/", quote_body(timestamp=iso(timestamp)))

    assert (response.status_code, response.json()) == (400, {"timestamp": [FUTURE_ERROR]})
    assert StockData.objects.count() == 0


def test_a_typo_in_the_year_can_no_longer_freeze_the_latest_price(staff_client, api_client):
    typo = staff_client.post(
        "/stocks/", quote_body(timestamp="2999-01-01T00:00:00Z", close_price="500")
    )
    now = staff_client.post(
        "/stocks/", quote_body(timestamp=iso(timezone.now()), close_price="190")
    )

    assert (typo.status_code, now.status_code) == (400, 201)
    assert api_client.get("/stocks/AAPL/").json()["close_price"] == "190.0000"


def test_a_bulk_request_with_one_future_quote_is_refused_whole(staff_client):
    quotes = [
        quote_body(timestamp="2025-01-02"),
        quote_body(timestamp=iso(timezone.now() + timedelta(hours=1))),
        quote_body(timestamp="2025-01-03"),
    ]

    response = staff_client.post("/stocks/", quotes)

    assert (response.status_code, response.json()) == (
        400,
        {"1": {"timestamp": [FUTURE_ERROR]}},
    )
    assert StockData.objects.count() == 0


@pytest.mark.django_db
def test_the_service_refuses_a_future_quote_for_commands_and_stores_nothing():
    quote = {
        "ticker": "aapl",
        "open_price": Decimal("10"),
        "close_price": Decimal("10"),
        "high": Decimal("10"),
        "low": Decimal("10"),
        "volume": 1,
    }
    past = {**quote, "timestamp": timezone.now() - timedelta(days=1)}
    future = {**quote, "timestamp": timezone.now() + timedelta(seconds=301)}

    with pytest.raises(QuoteFromTheFuture):
        quotes_ingest(quotes=[past, future])

    assert StockData.objects.count() == 0
    assert [q.ticker for q in quotes_ingest(quotes=[past])] == ["AAPL"]


@pytest.fixture
def operator_client(client, db):
    client.force_login(UserFactory(username="desk-op", is_staff=True, is_superuser=True))
    return client


def admin_form(timestamp) -> dict:
    return {
        "ticker": "aapl",
        "open_price": "10",
        "close_price": "12.5",
        "high": "13",
        "low": "9",
        "volume": "5",
        "timestamp_0": timestamp.strftime("%Y-%m-%d"),
        "timestamp_1": timestamp.strftime("%H:%M:%S"),
    }


def test_the_admin_refuses_a_future_quote_on_its_timestamp(operator_client):
    response = operator_client.post(
        "/admin/stocks/stockdata/add/", admin_form(timezone.now() + timedelta(days=2))
    )

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors == {"timestamp": [FUTURE_ERROR]}
    assert StockData.objects.count() == 0


def test_the_admin_refuses_to_move_a_stored_quote_into_the_future(operator_client):
    quote = StockDataFactory(ticker="AAPL")

    response = operator_client.post(
        f"/admin/stocks/stockdata/{quote.pk}/change/",
        admin_form(timezone.now() + timedelta(days=2)),
    )

    assert response.context["adminform"].form.errors == {"timestamp": [FUTURE_ERROR]}
    assert StockData.objects.get(pk=quote.pk).timestamp == quote.timestamp


def test_the_admin_adds_a_quote_through_the_service_upper_cased(operator_client):
    response = operator_client.post(
        "/admin/stocks/stockdata/add/", admin_form(timezone.now() - timedelta(days=1))
    )

    assert response.status_code == 302
    assert list(StockData.objects.values_list("ticker", "close_price")) == [
        ("AAPL", Decimal("12.5000"))
    ]


@pytest.mark.django_db
def test_seed_demo_goes_through_the_same_check(settings):
    settings.QUOTE_MAX_FUTURE_SECONDS = -(10 * 365 * 86400)  # even the demo's past is "future"

    with pytest.raises(QuoteFromTheFuture):
        call_command("seed_demo")
