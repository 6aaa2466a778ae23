"""Unit tests of the cross-cutting helpers: money, timestamps, tickers, JSON, cache, register."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import ParseError
from rest_framework.exceptions import ValidationError as DRFValidationError

from events.errors import EventsPruned, SinceAhead
from stockflow.cache import bump, cached, invalidate_on_commit, user_namespace
from stockflow.errors import (
    Conflict,
    DomainError,
    Gone,
    InvalidInput,
    NotAllowed,
    NotFound,
    TooMany,
)
from stockflow.exceptions import exception_handler, status_of
from stockflow.fields import TickerField, TimestampField, parse_timestamp
from stockflow.money import (
    cash_exact,
    cash_to_pay,
    cash_to_receive,
    is_whole_cents,
    price_to_pay,
    quantize_price,
)
from stockflow.parsers import DecimalJSONParser
from stocks.errors import (
    DuplicateQuote,
    DuplicateQuoteInRequest,
    InvalidTicker,
    QuoteFromTheFuture,
    TickersRequired,
    TooManyConnections,
    TooManyTickers,
    UnknownTicker,
)
from transactions.errors import (
    BalanceLimitExceeded,
    InsufficientBuyingPower,
    InsufficientShares,
    InvalidIdempotencyKey,
    InvalidTransferAmount,
    NotOpen,
    NotPending,
    TrailTooWide,
    UnknownTransaction,
)
from users.errors import DuplicateUsername, NotYourAccount, UnknownUser, UnknownUserId
from users.models import User
from users.services import user_register
from users.tests.factories import UserFactory

# --- money ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "to_pay", "to_receive"),
    [
        ("0.0040", "0.01", "0.00"),  # a sub-cent buy still costs a cent
        ("0.005", "0.01", "0.00"),
        ("42.125", "42.13", "42.12"),
        ("0.9999", "1.00", "0.99"),
        ("1.004999", "1.01", "1.00"),
        ("0.01", "0.01", "0.01"),
        ("5", "5.00", "5.00"),
        ("0", "0.00", "0.00"),
        ("999999999999.995", "1000000000000.00", "999999999999.99"),
    ],
)
def test_cash_paid_rounds_up_and_cash_received_rounds_down_to_the_cent(amount, to_pay, to_receive):
    paid, received = cash_to_pay(Decimal(amount)), cash_to_receive(Decimal(amount))

    assert (str(paid), str(received)) == (to_pay, to_receive)


def test_rounding_a_negative_cash_amount_is_refused():
    # Ceiling and floor favour the holder on a negative amount: no caller may pass one.
    with pytest.raises(ValueError):
        cash_to_pay(Decimal("-0.005"))
    with pytest.raises(ValueError):
        cash_to_receive(Decimal("-0.005"))


@pytest.mark.parametrize(
    ("amount", "whole", "exact"),
    [("5", True, "5.00"), ("5.000", True, "5.00"), ("0.01", True, "0.01"), ("0.005", False, None)],
)
def test_cash_exact_pads_whole_cents_and_never_rounds(amount, whole, exact):
    assert is_whole_cents(Decimal(amount)) is whole
    if exact is None:
        with pytest.raises(ValueError):
            cash_exact(Decimal(amount))
    else:
        assert str(cash_exact(Decimal(amount))) == exact


@pytest.mark.parametrize(
    ("amount", "price"),
    [("10.500105", "10.5002"), ("0.33333", "0.3334"), ("0.03125", "0.0313"), ("7", "7.0000")],
)
def test_a_price_that_stands_for_cash_paid_rounds_up_to_four_places(amount, price):
    assert str(price_to_pay(Decimal(amount))) == price


@pytest.mark.parametrize(
    ("amount", "price"),
    [
        ("0.03125", "0.0313"),  # banker's rounding: 0.0312
        ("100.66666", "100.6667"),
        ("0.00004", "0.0000"),
        ("7", "7.0000"),
    ],
)
def test_quantize_price_rounds_to_four_places_half_up(amount, price):
    result = quantize_price(Decimal(amount))

    assert result == Decimal(price)
    assert str(result) == price


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "end_of_day", "expected"),
    [
        ("2025-01-01", False, datetime(2025, 1, 1, tzinfo=UTC)),
        ("2025-01-01", True, datetime(2025, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)),
        (" 2025-03-09 ", False, datetime(2025, 3, 9, tzinfo=UTC)),
        ("2025-01-01T10:00:00Z", False, datetime(2025, 1, 1, 10, tzinfo=UTC)),
        ("2025-01-01T10:00:00Z", True, datetime(2025, 1, 1, 10, tzinfo=UTC)),
        ("2025-01-01T10:00:00+02:00", False, datetime(2025, 1, 1, 8, tzinfo=UTC)),
        ("2025-01-01T01:30:00-05:30", False, datetime(2025, 1, 1, 7, tzinfo=UTC)),
        ("2025-01-01T00:30:00+01:00", False, datetime(2024, 12, 31, 23, 30, tzinfo=UTC)),
        ("2025-01-01T10:00:00", False, datetime(2025, 1, 1, 10, tzinfo=UTC)),
        ("2025-01-01 10:00:00.123456", False, datetime(2025, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("1735689600", False, datetime(2025, 1, 1, tzinfo=UTC)),
        ("1735689600", True, datetime(2025, 1, 1, tzinfo=UTC)),
        (1735689600, False, datetime(2025, 1, 1, tzinfo=UTC)),
        ("1735689600.5", False, datetime(2025, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        (1735689600.25, False, datetime(2025, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)),
        ("0", False, datetime(1970, 1, 1, tzinfo=UTC)),
        ("253402300799", False, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_returns_an_aware_utc_datetime(value, end_of_day, expected):
    result = parse_timestamp(value, end_of_day=end_of_day)

    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "2" * 41,
        "2025-01-01T10:00:00.000000000000000000000Z",  # 42 characters
        "-1",
        "253402300800",
        "99999999999999999999",
        "1e10",
        "NaN",
        "inf",
        "not-a-date",
        "2025-13-01",
        "2025-02-30",
        "2025-01-01T25:00:00",
        "2025/01/01",
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        True,
        None,
    ],
)
def test_parse_timestamp_rejects_bad_input_with_value_error(value):
    with pytest.raises(ValueError):
        parse_timestamp(value)


@pytest.mark.parametrize("value", ["garbage", "9999-12-31T23:59:59-01:00", "-5", ""])
def test_timestamp_field_turns_bad_input_into_a_validation_error(value):
    with pytest.raises(DRFValidationError) as exc_info:
        TimestampField().run_validation(value)

    assert exc_info.value.get_codes() == ["invalid"]


# --- tickers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ticker"),
    [
        ("aapl", "AAPL"),
        ("AaPl", "AAPL"),
        (" brk.b ", "BRK.B"),
        ("rds-a", "RDS-A"),
        ("7203", "7203"),
        ("abcdefghij", "ABCDEFGHIJ"),
    ],
)
def test_ticker_field_upper_cases_valid_tickers(raw, ticker):
    assert TickerField().run_validation(raw) == ticker


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abcdefghijk",  # 11 characters
        "AA PL",
        "AAPL$",
        "AAPL/",
        "AA_PL",
        "\u0131bm",  # dotless i + "bm" upper-cases to "IBM"
        "\ufb00",  # the "ff" ligature upper-cases to "FF"
        "\u017f",  # long s upper-cases to "S"
        "\u00e9",
    ],
)
def test_ticker_field_rejects_bad_characters_and_lengths(raw):
    with pytest.raises(DRFValidationError):
        TickerField().run_validation(raw)


# --- JSON parsing -------------------------------------------------------------------------


def parse_json(body: bytes):
    return DecimalJSONParser().parse(io.BytesIO(body), "application/json", {})


def test_json_floats_become_exact_decimals_and_integers_stay_integers():
    data = parse_json(b'{"a": 0.1, "b": 1.10, "c": 155.0000, "d": 7, "e": "2.50", "f": 1e-7}')

    assert data == {
        "a": Decimal("0.1"),
        "b": Decimal("1.10"),
        "c": Decimal("155.0000"),
        "d": 7,
        "e": "2.50",
        "f": Decimal("1E-7"),
    }
    assert type(data["a"]) is Decimal
    assert str(data["b"]) == "1.10"
    assert type(data["d"]) is int


@pytest.mark.parametrize(
    "body",
    [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b"[NaN]", b'{"a": ', b"\xff"],
)
def test_json_parser_rejects_non_finite_numbers_and_garbage(body):
    with pytest.raises(ParseError):
        parse_json(body)


# --- cache --------------------------------------------------------------------------------


class Loader:
    def __init__(self, *values):
        self.values = list(values)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.values[min(self.calls, len(self.values)) - 1]


def test_cached_loads_once_then_serves_from_the_cache():
    loader = Loader({"balance": "1.00"}, {"balance": "2.00"})

    assert cached("user:amy", "detail", loader) == {"balance": "1.00"}
    assert cached("user:amy", "detail", loader) == {"balance": "1.00"}
    assert loader.calls == 1


def test_cached_keeps_namespaces_and_keys_apart():
    assert cached("user:amy", "detail", Loader("amy")) == "amy"
    assert cached("user:bob", "detail", Loader("bob")) == "bob"
    assert cached("user:amy", "other", Loader("other")) == "other"


def test_cached_does_not_store_a_missing_value():
    loader = Loader(None, None)

    assert cached("quotes", "latest:NOPE", loader) is None
    assert cached("quotes", "latest:NOPE", loader) is None
    assert loader.calls == 2


def test_bump_makes_the_next_read_reload():
    loader = Loader("old", "new")
    cached("quotes", "latest", loader)

    bump("quotes")

    assert cached("quotes", "latest", loader) == "new"
    assert cached("quotes", "latest", loader) == "new"
    assert loader.calls == 2
    assert cache.get("v:quotes") == 1
    bump("quotes")
    assert cache.get("v:quotes") == 2


def test_bump_of_one_namespace_leaves_the_others_cached():
    amy, bob = Loader("amy1", "amy2"), Loader("bob1", "bob2")
    cached("user:amy", "detail", amy)
    cached("user:bob", "detail", bob)

    bump("user:amy")

    assert cached("user:amy", "detail", amy) == "amy2"
    assert cached("user:bob", "detail", bob) == "bob1"


@pytest.mark.django_db
def test_invalidate_on_commit_bumps_only_after_the_commit(django_capture_on_commit_callbacks):
    namespace = user_namespace("amy")
    loader = Loader("old", "new")
    cached(namespace, "detail", loader)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        invalidate_on_commit(namespace, "quotes")
        assert cached(namespace, "detail", loader) == "old"  # not committed yet
        assert loader.calls == 1

    assert len(callbacks) == 2
    assert cached(namespace, "detail", loader) == "new"
    assert cache.get("v:quotes") == 1


@pytest.mark.django_db
def test_invalidate_on_commit_never_bumps_when_the_transaction_rolls_back(
    django_capture_on_commit_callbacks,
):
    loader = Loader("old", "new")
    cached("quotes", "latest", loader)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        invalidate_on_commit("quotes")

    assert len(callbacks) == 1
    assert cached("quotes", "latest", loader) == "old"
    assert cache.get("v:quotes") is None


# --- registration -------------------------------------------------------------------------


@pytest.mark.django_db
def test_register_creates_a_user_with_a_balance_and_a_token():
    user = user_register(username="amy", balance=Decimal("1234.56"))

    stored = User.objects.get(username="amy")
    assert stored.pk == user.pk
    assert stored.balance == Decimal("1234.56")
    assert stored.has_usable_password() is False
    assert Token.objects.filter(user=stored).count() == 1
    assert user.auth_token.key == Token.objects.get(user=stored).key
    assert len(user.auth_token.key) == 40


@pytest.mark.django_db
def test_register_with_a_strong_password_lets_the_user_log_in():
    user = user_register(username="amy", balance=Decimal("0"), password="correct horse battery")

    stored = User.objects.get(pk=user.pk)
    assert stored.check_password("correct horse battery") is True
    assert stored.balance == Decimal("0.00")


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["amy", "AMY", "Amy"])
def test_register_refuses_a_duplicate_username_whatever_its_case(username):
    UserFactory(username="amy")

    with pytest.raises(DuplicateUsername) as exc_info:
        user_register(username=username, balance=Decimal("10.00"))

    assert status_of(exc_info.value) == 409
    assert exc_info.value.code == "duplicate_username"
    assert User.objects.count() == 1
    assert Token.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1x", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
        ("8472910365", "This password is entirely numeric."),
        ("amy-trader", "The password is too similar to the username."),
    ],
)
def test_register_rejects_a_weak_password_and_stores_nothing(password, message):
    with pytest.raises(DjangoValidationError) as exc_info:
        user_register(username="amy-trader", balance=Decimal("10.00"), password=password)

    assert message in exc_info.value.message_dict["password"]
    assert User.objects.count() == 0
    assert Token.objects.count() == 0


def test_the_exception_handler_answers_a_django_validation_error_with_a_400():
    error = DjangoValidationError({"password": ["This password is too common."]})

    response = exception_handler(error, {})

    assert response.status_code == 400
    assert response.data == {"password": ["This password is too common."]}


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (DataError("numeric field overflow"), 400, "data_error"),
        (OperationalError("server closed the connection"), 503, "database_down"),
        (InterfaceError("connection already closed"), 503, "database_down"),
        (IntegrityError("duplicate key"), 409, "integrity_error"),
    ],
)
def test_database_errors_map_to_the_status_that_names_whose_fault_it_is(error, status, code):
    response = exception_handler(error, {})

    assert (response.status_code, response.data["code"]) == (status, code)


def test_an_unexpected_database_error_stays_a_500_bug():
    assert exception_handler(ProgrammingError("no such column"), {}) is None


DOMAIN_ERRORS = [
    (UnknownUser(username="bob"), 404, {"detail": "No user 'bob'.", "code": "unknown_user"}),
    (UnknownUserId(user_id=9), 404, {"detail": "No user with id 9.", "code": "unknown_user"}),
    (
        NotYourAccount(),
        403,
        {"detail": "You may only access your own account.", "code": "permission_denied"},
    ),
    (
        DuplicateUsername(username="amy"),
        409,
        {"detail": "Username 'amy' is already taken.", "code": "duplicate_username"},
    ),
    (
        UnknownTicker(ticker="ZZZZ"),
        404,
        {"detail": "No quotes for ticker 'ZZZZ'.", "code": "unknown_ticker"},
    ),
    (
        DuplicateQuote(),
        409,
        {
            "detail": "A quote for the same ticker and timestamp already exists.",
            "code": "duplicate_quote",
        },
    ),
    (
        DuplicateQuoteInRequest(ticker="AAPL", timestamp="2025-01-02T21:00:00+00:00"),
        409,
        {
            "detail": "Quote for AAPL at 2025-01-02T21:00:00+00:00 appears twice in the request.",
            "code": "duplicate_quote",
        },
    ),
    (
        QuoteFromTheFuture(seconds=300),
        400,
        {"timestamp": ["A quote may be at most 300 seconds ahead of the server's clock."]},
    ),
    (
        TickersRequired(most=50),
        400,
        {"tickers": ["Name 1 to 50 tickers, comma-separated: /ws/quotes/?tickers=AAPL,MSFT."]},
    ),
    (
        InvalidTicker(ticker="A$"),
        400,
        {"tickers": ["'A$' is not a ticker: 1-10 characters of A-Z, 0-9, '.' and '-'."]},
    ),
    (
        TooManyTickers(most=50, count=51),
        400,
        {"tickers": ["At most 50 tickers per connection; 51 were named."]},
    ),
    (
        TooManyConnections(most=20),
        429,
        {
            "detail": "At most 20 /ws/quotes/ connections per client address are open at once; "
            "close one before opening another.",
            "code": "too_many_connections",
        },
    ),
    (
        UnknownTransaction(transaction_id=3, user_id=7),
        404,
        {"detail": "No transaction 3 for user 7.", "code": "unknown_transaction"},
    ),
    (
        NotPending(transaction_id=3, status="completed"),
        409,
        {
            "detail": "Transaction 3 is already completed; only pending transactions can be "
            "cancelled.",
            "code": "not_pending",
        },
    ),
    (
        NotOpen(transaction_id=3, status="completed"),
        409,
        {
            "detail": "Transaction 3 is already completed; only open orders can be replaced.",
            "code": "not_open",
        },
    ),
    (
        InsufficientBuyingPower(needed="100.00", available="99.99"),
        409,
        {
            "detail": "This needs 100.00 of buying power; 99.99 is available.",
            "code": "insufficient_buying_power",
        },
    ),
    (
        InsufficientShares(needed=5, ticker="AAPL", available=4),
        409,
        {
            "detail": "This needs 5 unreserved AAPL shares; 4 are available.",
            "code": "insufficient_shares",
        },
    ),
    (
        TrailTooWide(close=Decimal("4.0000")),
        400,
        {"trail_price": ["A trailing sell's trail must be less than the current close, 4.0000."]},
    ),
    (
        InvalidIdempotencyKey(),
        400,
        {
            "detail": "Idempotency-Key must be 1-64 printable ASCII characters.",
            "code": "invalid_idempotency_key",
        },
    ),
    (
        InvalidTransferAmount(limit=1000),
        400,
        {
            "amount": [
                "Enter an amount greater than 0 and less than 1000, with at most 2 decimal places."
            ]
        },
    ),
    (
        BalanceLimitExceeded(limit=1000),
        400,
        {
            "amount": [
                "This deposit would take the balance to 1000 or more; a balance stays below it."
            ]
        },
    ),
    (
        EventsPruned(pruned_through=12, days=30),
        410,
        {
            "detail": "Events up to seq 12 were pruned (kept 30 days): since must be at least 12. "
            "Read the current state from the API, then resume from the oldest kept event.",
            "code": "events_pruned",
        },
    ),
    (
        SinceAhead(since=9, latest=4),
        400,
        {
            "since": [
                "since is 9 but this account's latest event is seq 4: a seq this account never "
                "reached (another account's, or another server's)."
            ]
        },
    ),
]


@pytest.mark.parametrize(("error", "status", "body"), DOMAIN_ERRORS)
def test_the_exception_handler_gives_each_domain_error_its_status_and_body(error, status, body):
    response = exception_handler(error, {})

    assert (response.status_code, response.data) == (status, body)


def _all_subclasses(cls):
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _all_subclasses(subclass)


def test_every_domain_error_of_the_apps_is_in_the_table_above():
    kinds = {InvalidInput, NotAllowed, NotFound, Conflict, Gone, TooMany}
    concrete = {c for c in _all_subclasses(DomainError) if c not in kinds}

    assert concrete == {type(error) for error, _, _ in DOMAIN_ERRORS}


def test_no_domain_error_knows_an_http_status():
    for cls in _all_subclasses(DomainError):
        assert not hasattr(cls, "status_code"), cls
