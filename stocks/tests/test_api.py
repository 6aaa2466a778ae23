"""HTTP tests for /stocks/: quote ingestion, validation, latest-quote reads and history."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework import serializers

from conftest import client_for
from stocks.models import StockData
from stocks.tests.factories import StockDataFactory
from users.tests.factories import UserFactory

iso = serializers.DateTimeField().to_representation

TIMESTAMP_ERROR = "Enter an ISO 8601 date or datetime (2025-01-01T10:00:00Z) or Unix epoch seconds."
TICKER_ERROR = "A ticker is 1-10 characters of A-Z, 0-9, '.' and '-'."
JAN_2_9PM = datetime(2025, 1, 2, 21, tzinfo=UTC)
JAN_2_9PM_EPOCH = 1735851600


def quote_body(**overrides) -> dict:
    return {
        "ticker": "AAPL",
        "open_price": "189.5000",
        "close_price": "191.2500",
        "high": "192.0000",
        "low": "188.7500",
        "volume": 53211000,
        "timestamp": "2025-01-02T21:00:00Z",
        **overrides,
    }


def quote_json(quote: StockData) -> dict:
    return {
        "id": quote.pk,
        "ticker": quote.ticker,
        "open_price": f"{Decimal(quote.open_price):.4f}",
        "close_price": f"{Decimal(quote.close_price):.4f}",
        "high": f"{Decimal(quote.high):.4f}",
        "low": f"{Decimal(quote.low):.4f}",
        "volume": quote.volume,
        "timestamp": iso(quote.timestamp),
    }


def daily_quotes(ticker: str = "AAPL", days: int = 4) -> list[StockData]:
    """Quotes at 21:00 UTC on 2025-01-01, 01-02, ..., closing at 100, 101, ..."""
    return [
        StockDataFactory(
            ticker=ticker,
            close_price=Decimal(100 + day),
            timestamp=datetime(2025, 1, 1, 21, tzinfo=UTC) + timedelta(days=day),
        )
        for day in range(days)
    ]


# --- POST /stocks/ -----------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_post_one_quote_and_get_back_what_was_stored(staff_client):
    response = staff_client.post("/stocks/", quote_body())

    assert response.status_code == 201, response.content
    stored = StockData.objects.get()
    assert response.json() == {
        "id": stored.pk,
        "ticker": "AAPL",
        "open_price": "189.5000",
        "close_price": "191.2500",
        "high": "192.0000",
        "low": "188.7500",
        "volume": 53211000,
        "timestamp": "2025-01-02T21:00:00Z",
    }
    assert (stored.close_price, stored.timestamp) == (Decimal("191.2500"), JAN_2_9PM)


@pytest.mark.django_db
def test_prices_are_accepted_as_numbers_or_strings(staff_client):
    response = staff_client.post(
        "/stocks/",
        quote_body(open_price=Decimal("189.5"), close_price="191.25", high=192, low="188.75"),
    )

    assert response.status_code == 201
    body = response.json()
    assert [body[f] for f in ("open_price", "close_price", "high", "low")] == [
        "189.5000",
        "191.2500",
        "192.0000",
        "188.7500",
    ]


@pytest.mark.django_db
def test_a_flat_quote_with_all_prices_equal_and_no_volume_is_valid(staff_client):
    flat = {"open_price": "1", "close_price": "1", "high": "1", "low": "1", "volume": 0}

    response = staff_client.post("/stocks/", quote_body(**flat))

    assert response.status_code == 201
    assert StockData.objects.get().volume == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("aapl", "AAPL"),
        ("brk.b", "BRK.B"),
        ("Bf-B", "BF-B"),
        ("x", "X"),
        ("ABCDEFGHIJ", "ABCDEFGHIJ"),
    ],
)
def test_the_ticker_is_case_insensitive_and_stored_upper_case(staff_client, given, stored):
    response = staff_client.post("/stocks/", quote_body(ticker=given))

    assert response.status_code == 201
    assert response.json()["ticker"] == stored
    assert StockData.objects.get().ticker == stored


@pytest.mark.django_db
def test_a_list_of_quotes_is_stored_and_returned_in_order(staff_client):
    quotes = [
        quote_body(ticker="MSFT", timestamp="2025-01-02"),
        quote_body(ticker="aapl", timestamp="2025-01-02"),
        quote_body(ticker="AAPL", timestamp="2025-01-03"),
    ]

    response = staff_client.post("/stocks/", quotes)

    assert response.status_code == 201
    stored = list(StockData.objects.order_by("id"))
    assert response.json() == [quote_json(q) for q in stored]
    assert [(q["ticker"], q["timestamp"]) for q in response.json()] == [
        ("MSFT", "2025-01-02T00:00:00Z"),
        ("AAPL", "2025-01-02T00:00:00Z"),
        ("AAPL", "2025-01-03T00:00:00Z"),
    ]


@pytest.mark.django_db
def test_a_batch_of_1000_quotes_is_accepted(staff_client):
    start = datetime(2025, 1, 1, tzinfo=UTC)
    quotes = [quote_body(timestamp=iso(start + timedelta(minutes=n))) for n in range(1000)]

    response = staff_client.post("/stocks/", quotes)

    assert response.status_code == 201
    assert len(response.json()) == 1000
    assert StockData.objects.count() == 1000


@pytest.mark.django_db
def test_a_batch_of_1001_quotes_is_refused(staff_client):
    start = datetime(2025, 1, 1, tzinfo=UTC)
    quotes = [quote_body(timestamp=iso(start + timedelta(minutes=n))) for n in range(1001)]

    response = staff_client.post("/stocks/", quotes)

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["Ensure this field has no more than 1000 elements."]
    }
    assert StockData.objects.count() == 0


@pytest.mark.django_db
def test_an_empty_batch_is_refused(staff_client):
    response = staff_client.post("/stocks/", [])

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["This list may not be empty."]}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"open_price": "0"}, {"open_price": ["Ensure this value is greater than 0."]}),
        ({"close_price": "-1"}, {"close_price": ["Ensure this value is greater than 0."]}),
        (
            {"open_price": "0", "close_price": "0", "high": "0", "low": "0"},
            {f: ["Ensure this value is greater than 0."] for f in ("open_price", "close_price")}
            | {f: ["Ensure this value is greater than 0."] for f in ("high", "low")},
        ),
        ({"low": "189.5001"}, {"low": ["low must be <= min(open_price, close_price)."]}),
        ({"high": "191.2499"}, {"high": ["high must be >= max(open_price, close_price)."]}),
        (
            {"open_price": "195", "high": "194"},
            {"high": ["high must be >= max(open_price, close_price)."]},
        ),
        ({"volume": -1}, {"volume": ["Ensure this value is greater than or equal to 0."]}),
        ({"volume": Decimal("1.5")}, {"volume": ["A valid integer is required."]}),
        ({"volume": "many"}, {"volume": ["A valid integer is required."]}),
        (
            {"open_price": "189.50001"},
            {"open_price": ["Ensure that there are no more than 4 decimal places."]},
        ),
        (
            {"low": Decimal("0.00001")},
            {"low": ["Ensure that there are no more than 4 decimal places."]},
        ),
        ({"high": "abc"}, {"high": ["A valid number is required."]}),
        ({"close_price": "NaN"}, {"close_price": ["A valid number is required."]}),
        ({"ticker": "AAPL!"}, {"ticker": [TICKER_ERROR]}),
        ({"ticker": "AA PL"}, {"ticker": [TICKER_ERROR]}),
        ({"ticker": "\u0131bm"}, {"ticker": [TICKER_ERROR]}),  # dotless i upper-cases to I
        (
            {"ticker": "'; DROP TABLE stocks_stockdata;--"},
            {"ticker": ["Ensure this field has no more than 10 characters.", TICKER_ERROR]},
        ),
        (
            {"ticker": "ABCDEFGHIJK"},
            {"ticker": ["Ensure this field has no more than 10 characters.", TICKER_ERROR]},
        ),
        ({"ticker": ""}, {"ticker": ["This field may not be blank."]}),
        ({"ticker": None}, {"ticker": ["This field may not be null."]}),
        ({"timestamp": "yesterday"}, {"timestamp": [TIMESTAMP_ERROR]}),
        ({"timestamp": "2025-02-30"}, {"timestamp": [TIMESTAMP_ERROR]}),
        ({"timestamp": "2025-01-02T25:00:00Z"}, {"timestamp": [TIMESTAMP_ERROR]}),
        ({"timestamp": True}, {"timestamp": [TIMESTAMP_ERROR]}),
        # Each of these used to be read as something else: 7203 as "7203", "\u0665" as 5,
        # "1_000" as 1000 and Arabic-Indic epoch seconds as 2025-01-01.
        ({"ticker": 7203}, {"ticker": ["Not a valid string."]}),
        ({"volume": "\u0665"}, {"volume": ["A valid integer is required."]}),
        ({"open_price": "1_000"}, {"open_price": ["A valid number is required."]}),
        (
            {"timestamp": "\u0661\u0667\u0663\u0665\u0666\u0668\u0669\u0666\u0660\u0660"},
            {"timestamp": [TIMESTAMP_ERROR]},
        ),
    ],
)
def test_an_invalid_quote_is_refused(staff_client, overrides, errors):
    response = staff_client.post("/stocks/", quote_body(**overrides))

    assert response.status_code == 400
    assert response.json() == errors
    assert StockData.objects.count() == 0


@pytest.mark.django_db
def test_a_quote_missing_fields_is_refused(staff_client):
    response = staff_client.post("/stocks/", {"ticker": "AAPL"})

    assert response.status_code == 400
    assert response.json() == {
        field: ["This field is required."]
        for field in ("open_price", "close_price", "high", "low", "volume")
    }


@pytest.mark.django_db
def test_one_invalid_quote_fails_the_whole_batch(staff_client):
    quotes = [quote_body(timestamp="2025-01-02"), quote_body(timestamp="2025-01-03", low="999")]

    response = staff_client.post("/stocks/", quotes)

    assert response.status_code == 400
    # DRF's list-error form: errors keyed by the index of the refused quote.
    assert response.json() == {"1": {"low": ["low must be <= min(open_price, close_price)."]}}
    assert StockData.objects.count() == 0


@pytest.mark.django_db
def test_the_timestamp_defaults_to_now(staff_client):
    body = quote_body()
    del body["timestamp"]
    before = timezone.now()

    response = staff_client.post("/stocks/", body)

    after = timezone.now()
    assert response.status_code == 201
    stored = StockData.objects.get()
    assert before <= stored.timestamp <= after
    assert response.json()["timestamp"] == iso(stored.timestamp)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2025-01-02", "2025-01-02T00:00:00Z"),
        ("2025-01-02T21:00:00Z", "2025-01-02T21:00:00Z"),
        ("2025-01-02T21:00:00", "2025-01-02T21:00:00Z"),
        ("2025-01-02T23:00:00+02:00", "2025-01-02T21:00:00Z"),
        ("2025-01-02T21:00:00.250000Z", "2025-01-02T21:00:00.250000Z"),
        (JAN_2_9PM_EPOCH, "2025-01-02T21:00:00Z"),
        (str(JAN_2_9PM_EPOCH), "2025-01-02T21:00:00Z"),
        (Decimal(f"{JAN_2_9PM_EPOCH}.5"), "2025-01-02T21:00:00.500000Z"),
    ],
)
def test_the_timestamp_is_an_iso_date_or_datetime_or_epoch_seconds(staff_client, given, stored):
    response = staff_client.post("/stocks/", quote_body(timestamp=given))

    assert response.status_code == 201, response.content
    assert response.json()["timestamp"] == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    "same_instant", ["2025-01-02T21:00:00Z", "2025-01-02T22:00:00+01:00", JAN_2_9PM_EPOCH]
)
def test_the_same_ticker_and_timestamp_twice_is_a_conflict(staff_client, same_instant):
    StockDataFactory(ticker="AAPL", timestamp=JAN_2_9PM)

    response = staff_client.post("/stocks/", quote_body(ticker="aapl", timestamp=same_instant))

    assert response.status_code == 409
    assert response.json() == {
        "detail": "A quote for the same ticker and timestamp already exists.",
        "code": "duplicate_quote",
    }
    assert StockData.objects.count() == 1


@pytest.mark.django_db
def test_the_same_timestamp_for_another_ticker_is_fine(staff_client):
    StockDataFactory(ticker="MSFT", timestamp=JAN_2_9PM)

    response = staff_client.post("/stocks/", quote_body(ticker="AAPL"))

    assert response.status_code == 201


@pytest.mark.django_db
def test_a_duplicate_within_one_batch_is_a_conflict_and_stores_nothing(staff_client):
    quotes = [
        quote_body(timestamp="2025-01-01"),
        quote_body(ticker="AAPL", timestamp="2025-01-02T21:00:00Z"),
        quote_body(ticker="aapl", timestamp="2025-01-02T22:00:00+01:00"),
    ]

    response = staff_client.post("/stocks/", quotes)

    assert response.status_code == 409
    assert response.json() == {
        "detail": "Quote for AAPL at 2025-01-02T21:00:00+00:00 appears twice in the request.",
        "code": "duplicate_quote",
    }
    assert StockData.objects.count() == 0


@pytest.mark.django_db
def test_a_batch_clashing_with_a_stored_quote_stores_nothing(staff_client):
    StockDataFactory(ticker="AAPL", timestamp=JAN_2_9PM)
    quotes = [quote_body(ticker="MSFT"), quote_body(timestamp="2025-01-01"), quote_body()]

    response = staff_client.post("/stocks/", quotes)

    assert response.status_code == 409
    assert response.json()["code"] == "duplicate_quote"
    assert list(StockData.objects.values_list("ticker", "timestamp")) == [("AAPL", JAN_2_9PM)]


@pytest.mark.django_db
def test_posting_quotes_needs_authentication(api_client):
    response = api_client.post("/stocks/", quote_body())

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
    assert StockData.objects.count() == 0


@pytest.mark.django_db
def test_a_plain_user_cannot_post_quotes(user_client):
    response = user_client.post("/stocks/", quote_body())

    assert response.status_code == 403
    assert response.json() == {
        "detail": "Posting market data needs a staff account or the stocks.add_stockdata "
        "permission.",
        "code": "permission_denied",
    }
    assert StockData.objects.count() == 0


@pytest.mark.django_db
def test_a_feed_account_with_the_add_stockdata_permission_can_post_quotes():
    feed = UserFactory(username="feed")
    feed.user_permissions.add(Permission.objects.get(codename="add_stockdata"))

    response = client_for(feed).post("/stocks/", [quote_body(), quote_body(ticker="MSFT")])

    assert response.status_code == 201
    assert StockData.objects.count() == 2


# --- GET /stocks/ and /stocks/{ticker}/ --------------------------------------------------


@pytest.mark.django_db
def test_no_quotes_means_an_empty_list(api_client):
    response = api_client.get("/stocks/")

    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.django_db
def test_anyone_reads_the_latest_quote_of_every_ticker_sorted_by_ticker(api_client):
    msft = StockDataFactory(ticker="MSFT", timestamp=JAN_2_9PM)
    StockDataFactory(ticker="AAPL", timestamp=JAN_2_9PM - timedelta(days=1))
    aapl = StockDataFactory(ticker="AAPL", timestamp=JAN_2_9PM, close_price=Decimal("155.00"))
    StockDataFactory(ticker="AAPL", timestamp=JAN_2_9PM - timedelta(hours=1))
    ibm = StockDataFactory(ticker="IBM", timestamp=JAN_2_9PM - timedelta(days=30))

    response = api_client.get("/stocks/")

    assert response.status_code == 200
    assert response.json() == [quote_json(q) for q in (aapl, ibm, msft)]
    assert response.json()[0]["close_price"] == "155.0000"


@pytest.mark.django_db
@pytest.mark.parametrize("ticker", ["AAPL", "aapl", "Aapl"])
def test_anyone_reads_the_latest_quote_of_one_ticker_in_any_case(api_client, ticker):
    StockDataFactory(ticker="AAPL", timestamp=JAN_2_9PM - timedelta(days=1))
    latest = StockDataFactory(ticker="AAPL", timestamp=JAN_2_9PM, close_price=Decimal("155"))
    StockDataFactory(ticker="MSFT", timestamp=JAN_2_9PM + timedelta(days=1))

    response = api_client.get(f"/stocks/{ticker}/")

    assert response.status_code == 200
    assert response.json() == quote_json(latest)


@pytest.mark.django_db
def test_an_unknown_ticker_is_404(api_client, quote):
    response = api_client.get("/stocks/ZZZZ/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No quotes for ticker 'ZZZZ'.", "code": "unknown_ticker"}


@pytest.mark.django_db
def test_a_malformed_ticker_in_the_path_is_400(api_client):
    response = api_client.get("/stocks/NOT!VALID/")

    assert response.status_code == 400
    assert response.json() == {"ticker": [TICKER_ERROR]}


@pytest.mark.django_db
def test_the_latest_quotes_are_served_from_the_cache(api_client, quote, django_assert_num_queries):
    assert api_client.get("/stocks/").json() == [quote_json(quote)]
    assert api_client.get("/stocks/AAPL/").json() == quote_json(quote)
    with django_assert_num_queries(0):
        api_client.get("/stocks/")
        api_client.get("/stocks/AAPL/")
    # Written behind the API's back: no invalidation, so the cached reads do not see it.
    StockDataFactory(ticker="AAPL", timestamp=quote.timestamp + timedelta(days=1))

    assert api_client.get("/stocks/").json() == [quote_json(quote)]
    assert api_client.get("/stocks/AAPL/").json() == quote_json(quote)


@pytest.mark.django_db
def test_a_posted_quote_is_visible_at_once_on_both_cached_reads(
    api_client, staff_client, quote, django_capture_on_commit_callbacks
):
    assert api_client.get("/stocks/").json() == [quote_json(quote)]
    assert api_client.get("/stocks/AAPL/").json() == quote_json(quote)
    assert api_client.get("/stocks/MSFT/").status_code == 404

    newer = iso(quote.timestamp + timedelta(days=1))
    with django_capture_on_commit_callbacks(execute=True):
        posted = staff_client.post(
            "/stocks/",
            [quote_body(timestamp=newer, close_price="191.0000"), quote_body(ticker="msft")],
        ).json()

    assert api_client.get("/stocks/").json() == posted
    assert api_client.get("/stocks/AAPL/").json() == posted[0]
    assert api_client.get("/stocks/aapl/").json()["close_price"] == "191.0000"
    assert api_client.get("/stocks/MSFT/").json() == posted[1]


@pytest.mark.django_db
def test_an_older_quote_posted_later_does_not_replace_the_latest(
    api_client, staff_client, quote, django_capture_on_commit_callbacks
):
    older = iso(quote.timestamp - timedelta(days=1))
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/stocks/", quote_body(timestamp=older))
    assert response.status_code == 201

    assert api_client.get("/stocks/AAPL/").json() == quote_json(quote)
    assert api_client.get("/stocks/").json() == [quote_json(quote)]


# --- GET /stocks/{ticker}/history/ -------------------------------------------------------


@pytest.mark.django_db
def test_history_lists_all_quotes_of_the_ticker_oldest_first(api_client):
    quotes = daily_quotes()
    daily_quotes("MSFT", days=2)

    response = api_client.get("/stocks/aapl/history/")

    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "next": None,
        "previous": None,
        "results": [quote_json(q) for q in quotes],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "days"),
    [
        ("start=2025-01-02&end=2025-01-03", [1, 2]),
        ("start=2025-01-02T21:00:00Z&end=2025-01-03T21:00:00Z", [1, 2]),
        ("start=2025-01-02T21:00:00.000001Z&end=2025-01-03T20:59:59Z", []),
        ("start=2025-01-03T00:00:00%2B02:00", [2, 3]),
        ("start=&end=", [0, 1, 2, 3]),
        (f"start={JAN_2_9PM_EPOCH}&end={JAN_2_9PM_EPOCH + 86400}", [1, 2]),
        ("start=2025-01-03", [2, 3]),
        ("end=2025-01-02", [0, 1]),
        ("start=2025-01-04&end=2025-01-04", [3]),
        ("start=2025-02-01", []),
    ],
)
def test_history_filters_by_an_inclusive_range(api_client, query, days):
    quotes = daily_quotes()

    response = api_client.get(f"/stocks/AAPL/history/?{query}")

    assert response.status_code == 200
    assert response.json()["count"] == len(days)
    assert response.json()["results"] == [quote_json(quotes[d]) for d in days]


@pytest.mark.django_db
def test_history_pages_with_limit_and_offset(api_client):
    quotes = daily_quotes()

    response = api_client.get("/stocks/AAPL/history/?limit=2&offset=1")

    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "next": "http://testserver/stocks/AAPL/history/?limit=2&offset=3",
        "previous": "http://testserver/stocks/AAPL/history/?limit=2",
        "results": [quote_json(q) for q in quotes[1:3]],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("start=yesterday", {"start": [TIMESTAMP_ERROR]}),
        ("end=2025-13-01", {"end": [TIMESTAMP_ERROR]}),
        ("start=1e10", {"start": [TIMESTAMP_ERROR]}),
        ("start=-1", {"start": [TIMESTAMP_ERROR]}),
        ("start=99999999999999999999", {"start": [TIMESTAMP_ERROR]}),
        ("start=2025-01-03&end=2025-01-02", {"end": ["end must not be before start."]}),
    ],
)
def test_history_refuses_bad_timestamps(api_client, query, errors):
    daily_quotes()

    response = api_client.get(f"/stocks/AAPL/history/?{query}")

    assert response.status_code == 400
    assert response.json() == errors


@pytest.mark.django_db
def test_history_of_an_unknown_ticker_is_404(api_client, quote):
    response = api_client.get("/stocks/ZZZZ/history/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No quotes for ticker 'ZZZZ'.", "code": "unknown_ticker"}
