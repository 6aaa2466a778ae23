"""HTTP conventions across all routes: /api/ prefix, slashes, JSON errors, docs and health."""

import json
from decimal import Decimal

import pytest
from swagger_spec_validator.validator20 import validate_spec

from stockflow.pagination import LimitOffsetPagination
from stocks.models import StockData
from transactions.models import Transaction, Transfer
from transactions.tests.factories import TransactionFactory
from users.models import User

ROOT_PATHS = [
    "/",
    "/auth/token/",
    "/events/",
    "/health/",
    "/stocks/",
    "/stocks/{ticker}/",
    "/stocks/{ticker}/history/",
    "/transactions/",
    "/transactions/{user_id}/",
    "/transactions/{user_id}/{start_timestamp}/{end_timestamp}/",
    "/transactions/{user_id}/{transaction_id}/",
    "/users/",
    "/users/{username}/",
    "/users/{username}/portfolio/",
    "/users/{username}/transfers/",
]
NO_ROUTE = {"detail": "No route matches this URL.", "code": "not_found"}
QUOTE = {
    "ticker": "MSFT",
    "open_price": "400.0000",
    "close_price": "401.0000",
    "high": "402.0000",
    "low": "399.0000",
    "volume": 100,
    "timestamp": "2025-01-02T21:00:00Z",
}


@pytest.fixture
def market(user, staff, quote):
    """A trader with one pending transaction, a staff account and an AAPL quote."""
    return TransactionFactory(user=user, unit_price=Decimal("150.0000"))


def read_routes(user, txn) -> list[str]:
    return [
        "/users/",
        f"/users/{user.username}/",
        f"/users/{user.username}/portfolio/",
        f"/users/{user.username}/transfers/",
        "/stocks/",
        "/stocks/AAPL/",
        "/stocks/aapl/history/?start=2020-01-01",
        f"/transactions/{user.pk}/",
        f"/transactions/{user.pk}/?start_timestamp=2020-01-01",
        f"/transactions/{user.pk}/2020-01-01/2999-12-31/",
        f"/transactions/{user.pk}/{txn.pk}/",
        "/health/",
    ]


# --- /api/ prefix and trailing slashes ---------------------------------------------------


@pytest.mark.django_db
def test_every_read_route_answers_the_same_under_api(staff_client, user, market):
    for path in read_routes(user, market):
        root = staff_client.get(path)
        prefixed = staff_client.get(f"/api{path}")

        assert (root.status_code, prefixed.status_code) == (200, 200), path
        assert prefixed.json() == root.json(), path


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["", "/api"])
@pytest.mark.parametrize("slash", ["/", ""])
def test_every_write_route_works_with_and_without_prefix_and_trailing_slash(
    api_client, staff_client, user_client, user, market, prefix, slash
):
    registered = api_client.post(
        f"{prefix}/users{slash}",
        {"username": "alice", "balance": "10.00", "password": "correct-horse-battery"},
    )
    token = api_client.post(
        f"{prefix}/auth/token{slash}", {"username": "alice", "password": "correct-horse-battery"}
    )
    quoted = staff_client.post(f"{prefix}/stocks{slash}", QUOTE)
    traded = user_client.post(
        f"{prefix}/transactions{slash}",
        {"ticker": "msft", "transaction_type": "buy", "transaction_volume": 1},
    )
    cancelled = user_client.delete(f"{prefix}/transactions/{user.pk}/{market.pk}{slash}")
    deposited = user_client.post(
        f"{prefix}/users/{user.username}/transfers{slash}",
        {"direction": "deposit", "amount": "5.00"},
    )

    responses = (registered, token, quoted, traded, cancelled, deposited)
    assert [r.status_code for r in responses] == [201, 200, 201, 201, 200, 201]
    assert token.json() == {"token": registered.json()["token"]}
    assert traded.json()["transaction_price"] == "401.00"
    assert cancelled.json()["status"] == "cancelled"


@pytest.mark.django_db
def test_every_read_route_works_without_the_trailing_slash(staff_client, user, market):
    for path in read_routes(user, market):
        bare = path.replace("/?", "?") if "?" in path else path.rstrip("/")

        response = staff_client.get(bare)

        assert response.status_code == 200, bare
        assert response.json() == staff_client.get(path).json(), bare


# --- JSON errors ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/nope/",
        "/api/nope/",
        "/users/alice/portfolio/extra/",
        "/transactions/abc/",
        "/transactions/1/2/3/4/",
        "/transactions/1234567890123456789/",
        "/stocks/AAPL/history/more/",
        "/swagger.xml",
    ],
)
def test_an_unknown_url_is_a_json_404(staff_client, path):
    response = staff_client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == NO_ROUTE


@pytest.mark.django_db
def test_an_unknown_url_is_a_json_404_for_a_post_too(api_client):
    response = api_client.post("/orders/", {"ticker": "AAPL"})

    assert response.status_code == 404
    assert response.json() == NO_ROUTE


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/stocks/"),
        ("delete", "/stocks/AAPL/"),
        ("post", "/stocks/AAPL/history/"),
        ("patch", "/users/operator/"),
        ("delete", "/users/operator/"),
        ("post", "/users/operator/portfolio/"),
        ("put", "/users/operator/transfers/"),
        ("delete", "/users/operator/transfers/"),
        ("put", "/transactions/"),
        ("get", "/transactions/"),
        ("post", "/health/"),
        ("get", "/auth/token/"),
        ("put", "/api/stocks/"),
    ],
)
def test_a_wrong_method_is_a_json_405(staff_client, quote, method, path):
    response = getattr(staff_client, method)(path)

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": f'Method "{method.upper()}" not allowed.',
        "code": "method_not_allowed",
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", "hello"),
        ("application/x-www-form-urlencoded", "username=alice&balance=1"),
        ("application/xml", "<user/>"),
    ],
)
def test_a_body_that_is_not_json_is_a_415(api_client, content_type, body):
    response = api_client.post("/users/", body, content_type=content_type)

    assert response.status_code == 415
    assert response.json() == {
        "detail": f'Unsupported media type "{content_type}" in request.',
        "code": "unsupported_media_type",
    }
    assert not User.objects.exists()


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["*/*", "application/json", BROWSER_ACCEPT])
def test_reads_and_errors_are_json_for_any_client(staff_client, user, market, accept):
    for path in read_routes(user, market):
        response = staff_client.get(path, HTTP_ACCEPT=accept)

        assert response.status_code == 200, path
        assert response["Content-Type"] == "application/json", path

    missing = staff_client.get("/stocks/ZZZZ/", HTTP_ACCEPT=accept)

    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json"
    assert missing.json() == {"detail": "No quotes for ticker 'ZZZZ'.", "code": "unknown_ticker"}


@pytest.mark.django_db
def test_a_client_accepting_only_html_gets_a_json_406(api_client):
    response = api_client.get("/stocks/", HTTP_ACCEPT="text/html")

    assert response.status_code == 406
    assert response.json() == {
        "detail": "Could not satisfy the request Accept header.",
        "code": "not_acceptable",
    }


BAD_BODIES = {
    "malformed": "{",
    "trailing-comma": '{"username": "alice", "balance": "1",}',
    "single-quotes": "{'username': 'alice'}",
    "empty": "",
    "whitespace": "   ",
    "empty-object": "{}",
    "empty-list": "[]",
    "list-of-numbers": "[1, 2, 3]",
    "list-of-lists": "[[]]",
    "string": '"just a string"',
    "number": "42",
    "decimal": "3.14",
    "null": "null",
    "true": "true",
    "bare-nan": "NaN",
    "bare-infinity": "Infinity",
    "nan-values": json.dumps(
        {
            "username": "nan",
            "balance": "NaN",
            "ticker": "AAPL",
            "open_price": "NaN",
            "close_price": "NaN",
            "high": "NaN",
            "low": "NaN",
            "volume": "NaN",
            "transaction_type": "buy",
            "transaction_volume": "NaN",
        }
    ).replace('"NaN"', "NaN"),
    "infinity-values": '{"username": "inf", "balance": Infinity, "password": -Infinity, '
    '"ticker": "AAPL", "open_price": Infinity, "close_price": 1, "high": Infinity, "low": 1, '
    '"volume": Infinity, "transaction_type": "buy", "transaction_volume": Infinity}',
    "string-infinities": json.dumps(
        {
            "username": "inf",
            "balance": "-Infinity",
            "ticker": "AAPL",
            "open_price": "Infinity",
            "close_price": "1",
            "high": "Infinity",
            "low": "1",
            "volume": "Infinity",
            "transaction_type": "buy",
            "transaction_volume": "Infinity",
        }
    ),
    "exponent-beyond-decimal": '{"username": "big", "balance": 1e9999999999999999999999, '
    '"ticker": "AAPL", "open_price": 1e9999999999999999999999, "transaction_type": "buy", '
    '"transaction_volume": 1e9999999999999999999999}',
    "huge-exponent": '{"username": "big", "balance": 1e999999, "ticker": "AAPL", '
    '"open_price": 1e999999, "close_price": 1, "high": 1e999999, "low": 1, "volume": 1e999999, '
    '"transaction_type": "buy", "transaction_volume": 1e999999, "password": 1e999999}',
    "tiny-exponent": '{"username": "tiny", "balance": 1e-999999, "ticker": "AAPL", '
    '"open_price": 1e-999999, "close_price": 1, "high": 1, "low": 1e-999999, "volume": 1, '
    '"transaction_type": "buy", "transaction_volume": 1e-999999}',
    "huge-integers": json.dumps(
        {
            "username": "big",
            "balance": 10**4000,
            "ticker": "AAPL",
            "open_price": 10**4000,
            "close_price": 1,
            "high": 10**4000,
            "low": 1,
            "volume": 10**4000,
            "timestamp": 10**4000,
            "user_id": 10**4000,
            "transaction_type": "buy",
            "transaction_volume": 10**4000,
        }
    ),
    "integer-over-python-limit": '{"balance": ' + "9" * 5000 + "}",
    "deep-nesting": "[" * 100_000 + "]" * 100_000,
    "wrong-types": json.dumps(
        {
            "username": ["alice"],
            "balance": {"amount": 1},
            "password": {"x": 1},
            "ticker": ["AAPL"],
            "open_price": [1],
            "close_price": {"x": 1},
            "high": None,
            "low": True,
            "volume": [1],
            "timestamp": {"at": "now"},
            "user_id": [1],
            "transaction_type": ["buy"],
            "transaction_volume": {"n": 1},
        }
    ),
    "booleans": json.dumps(
        {
            "username": True,
            "balance": True,
            "password": False,
            "ticker": True,
            "open_price": True,
            "close_price": True,
            "high": True,
            "low": True,
            "volume": True,
            "user_id": True,
            "transaction_type": True,
            "transaction_volume": True,
        }
    ),
    "sql-injection": json.dumps(
        {
            "username": "x' OR '1'='1' --",
            "password": "' OR '1'='1",
            "balance": "1; DROP TABLE users_user",
            "ticker": "'; DROP TABLE stocks_stockdata;--",
            "open_price": "1 OR 1=1",
            "close_price": "1",
            "high": "1",
            "low": "1",
            "volume": "1; --",
            "transaction_type": "buy' OR 1=1 --",
            "transaction_volume": "1 UNION SELECT 1",
        }
    ),
    "unicode": json.dumps(
        {
            "username": "💥 résumé 名前",
            "password": "pässwörd-💥",
            "balance": "💰",
            "ticker": "💥",
            "open_price": "\u0661\u0662\u0663\u066b\u0664",  # Arabic-Indic 123.4
            "close_price": "1",
            "high": "1",
            "low": "1",
            "volume": "½",
            "transaction_type": "b\u03c5y",  # Greek upsilon
            "transaction_volume": "①",
        }
    ),
    "lone-surrogates": '{"username": "\\ud800", "password": "\\udfff", "balance": "\\ud800", '
    '"ticker": "\\ud800", "open_price": "\\ud800", "close_price": "1", "high": "1", "low": "1", '
    '"volume": 1, "transaction_type": "\\ud800", "transaction_volume": "\\ud800"}',
    "null-bytes": json.dumps(
        {
            "username": "alice\x00",
            "password": "pass\x00word-long",
            "balance": "1\x00",
            "ticker": "AA\x00PL",
            "open_price": "1",
            "close_price": "1",
            "high": "1",
            "low": "1",
            "volume": 1,
            "transaction_type": "buy\x00",
            "transaction_volume": "1\x00",
        }
    ),
    "long-strings": json.dumps(
        {
            "username": "a" * 100_000,
            "password": "b" * 100_000,
            "balance": "9" * 100_000,
            "ticker": "A" * 100_000,
            "open_price": "1" * 100_000,
            "close_price": "1",
            "high": "1",
            "low": "1",
            "volume": "9" * 100_000,
            "timestamp": "2" * 100_000,
            "transaction_type": "b" * 100_000,
            "transaction_volume": "9" * 100_000,
        }
    ),
    "list-of-bad-quotes": json.dumps([{"ticker": "AAPL"}, "x", None, 1]),
    "bad-timestamps": json.dumps(
        {
            "username": "ts",
            "ticker": "AAPL",
            "open_price": "1",
            "close_price": "1",
            "high": "1",
            "low": "1",
            "volume": 1,
            "timestamp": "9999-12-31T23:59:59-01:00",
        }
    ),
}
BAD_BYTES = {
    "invalid-utf8": (b'{"username": "\xff\xfe", "balance": "1"}', "application/json"),
    "utf16-declared-utf8-sent": (b'{"username": "x"}', "application/json; charset=utf-16"),
    "unknown-charset": (b'{"username": "x"', "application/json; charset=no-such-charset"),
    "latin1-declared": (
        b'{"username": "\xe9", "balance": "x"}',
        "application/json; charset=latin-1",
    ),
}


@pytest.fixture
def post_routes(api_client, staff_client, user_client, user, market):
    """Every POST route with a client allowed to call it, and row counts that must not grow."""
    return {
        "/users/": api_client,
        "/auth/token/": api_client,
        "/stocks/": staff_client,
        "/transactions/": user_client,
        f"/users/{user.username}/transfers/": user_client,
    }


def row_counts() -> tuple[int, ...]:
    return (
        User.objects.count(),
        StockData.objects.count(),
        Transaction.objects.count(),
        Transfer.objects.count(),
        # A refused transfer must not move cash either.
        *User.objects.order_by("pk").values_list("balance", flat=True),
    )


def assert_json_client_error(response, label: str) -> None:
    assert 400 <= response.status_code < 500, (label, response.status_code, response.content)
    assert response["Content-Type"] == "application/json", label
    body = response.json()
    assert isinstance(body, dict) and body, label


@pytest.mark.django_db
@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies_are_json_client_errors_on_every_post_route(post_routes, body):
    before = row_counts()

    for route, client in post_routes.items():
        for path in (route, f"/api{route}"):
            response = client.post(path, body, content_type="application/json")

            assert_json_client_error(response, path)
    assert row_counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "content_type"), BAD_BYTES.values(), ids=BAD_BYTES.keys())
def test_badly_encoded_bodies_are_json_client_errors_on_every_post_route(
    post_routes, body, content_type
):
    before = row_counts()

    for route, client in post_routes.items():
        response = client.post(route, body, content_type=content_type)

        assert_json_client_error(response, route)
    assert row_counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    ["{", "[1", '{"a": NaN}', '{"a": 1e9999999999999999999999}', "[" * 100_000],
    ids=["truncated-object", "truncated-list", "nan", "exponent-beyond-decimal", "deep-nesting"],
)
def test_unparseable_json_is_a_400_parse_error(api_client, body):
    response = api_client.post("/users/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert response.json()["detail"].startswith("JSON parse error - ")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[]", "list"),
        ('"alice"', "str"),
        ("42", "int"),
        ("4.2", "Decimal"),
        ("true", "bool"),
    ],
)
def test_a_body_that_is_not_an_object_names_what_it_got(user_client, quote, body, expected):
    response = user_client.post("/transactions/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": [f"Invalid data. Expected a dictionary, but got {expected}."]
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/stocks/AAPL/history/", "start=NaN"),
        ("/stocks/AAPL/history/", "start=Infinity"),
        ("/stocks/AAPL/history/", "end=1e999999"),
        ("/stocks/AAPL/history/", "start=%00"),
        ("/stocks/AAPL/history/", "start=' OR 1=1 --"),
        ("/stocks/AAPL/history/", "start=💥"),
        # Within MAX_REQUEST_LINE_BYTES (longer is a 414 before any view).
        ("/stocks/AAPL/history/", "start=" + "9" * 4000),
        ("/transactions/{user_id}/", "start_timestamp=NaN"),
        ("/transactions/{user_id}/", "end_timestamp=0001-01-01T00:00:00%2B01:00"),
        ("/transactions/{user_id}/", "start_timestamp=%ED%A0%80"),
        # Arabic-Indic digits: 1735689600 to float(), yet no timestamp.
        (
            "/stocks/AAPL/history/",
            "start=%D9%A1%D9%A7%D9%A3%D9%A5%D9%A6%D9%A8%D9%A9%D9%A6%D9%A0%D9%A0",
        ),
    ],
)
def test_bad_query_values_are_json_400s(user_client, user, quote, path, query):
    response = user_client.get(f"{path.format(user_id=user.pk)}?{query}")

    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/stocks/%00/",
        "/stocks/💥/",
        "/stocks/' OR 1=1 --/",
        "/stocks/%ED%A0%80/history/",
        "/users/%00/",
        "/users/💥/portfolio/",
        "/users/%ED%A0%80/",
        "/transactions/{user_id}/NaN/Infinity/",
        "/transactions/{user_id}/%00/2025-01-01/",
    ],
)
def test_bad_path_values_are_json_client_errors(staff_client, user, quote, path):
    response = staff_client.get(path.format(user_id=user.pk))

    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"] == "application/json"


# --- operations and docs -------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/health/", "/api/health/", "/health"])
def test_health_reports_ok_with_its_checks(api_client, path):
    response = api_client.get(path)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok (in-process tasks)"},
    }


@pytest.mark.django_db
def test_health_ignores_a_bad_token(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token nonsense")

    response = api_client.get("/health/")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/swagger/", "/swagger"])
def test_swagger_ui_is_served_as_html(api_client, path):
    response = api_client.get(path)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b"swagger-ui" in response.content


@pytest.mark.django_db
def test_the_schema_documents_the_root_routes_with_token_auth(api_client):
    response = api_client.get("/swagger.json")

    assert response.status_code == 200
    schema = response.json()
    assert sorted(schema["paths"]) == ROOT_PATHS
    assert schema["securityDefinitions"] == {
        "Token": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "DRF token: `Token <key>`",
        }
    }
    assert schema["security"] == [{"Token": []}]
    assert schema["info"]["title"] == "StockFlow API"
    assert set(schema["paths"]["/transactions/{user_id}/{transaction_id}/"]) >= {"get", "delete"}


# What each operation documents; stockflow/tests/test_schemathesis.py checks that it is true.
DOCUMENTED_STATUSES = {
    ("GET", "/"): "200 414 415 431",
    ("POST", "/auth/token/"): "200 400 401 413 414 415 429 431 503",
    ("GET", "/events/"): "200 400 401 403 404 410 414 415 429 431 503",
    ("GET", "/health/"): "200 414 415 431 503",
    ("GET", "/stocks/"): "200 401 414 415 429 431 503",
    ("POST", "/stocks/"): "201 400 401 403 409 413 414 415 429 431 503",
    ("GET", "/stocks/{ticker}/"): "200 400 401 404 414 415 429 431 503",
    ("GET", "/stocks/{ticker}/history/"): "200 400 401 404 414 415 429 431 503",
    ("POST", "/transactions/"): "200 201 400 401 403 404 409 413 414 415 429 431 503",
    ("GET", "/transactions/{user_id}/"): "200 400 401 403 404 414 415 429 431 503",
    ("GET", "/transactions/{user_id}/{start_timestamp}/{end_timestamp}/"): (
        "200 400 401 403 404 414 415 429 431 503"
    ),
    ("GET", "/transactions/{user_id}/{transaction_id}/"): "200 401 403 404 414 415 429 431 503",
    ("DELETE", "/transactions/{user_id}/{transaction_id}/"): (
        "200 401 403 404 409 414 415 429 431 503"
    ),
    ("PATCH", "/transactions/{user_id}/{transaction_id}/"): (
        "200 400 401 403 404 409 413 414 415 429 431 503"
    ),
    ("GET", "/users/"): "200 400 401 403 414 415 429 431 503",
    ("POST", "/users/"): "201 400 401 409 413 414 415 429 431 503",
    ("GET", "/users/{username}/"): "200 401 403 404 414 415 429 431 503",
    ("GET", "/users/{username}/portfolio/"): "200 401 403 404 414 415 429 431 503",
    ("GET", "/users/{username}/transfers/"): "200 400 401 403 404 414 415 429 431 503",
    ("POST", "/users/{username}/transfers/"): (
        "200 201 400 401 403 404 409 413 414 415 429 431 503"
    ),
}
PAGED = [
    "/events/",
    "/users/",
    "/stocks/AAPL/history/",
    "/transactions/{user_id}/",
    "/users/{username}/transfers/",
]


def operations(schema: dict) -> dict:
    return {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }


@pytest.mark.django_db
def test_the_schema_is_valid_swagger_2_with_one_id_per_operation(api_client):
    schema = api_client.get("/swagger.json").json()

    validate_spec(schema)
    ids = [operation["operationId"] for operation in operations(schema).values()]
    assert len(ids) == len(set(ids)) == 20


@pytest.mark.django_db
def test_the_schema_documents_every_status_an_operation_answers(api_client):
    schema = api_client.get("/swagger.json").json()

    documented = {
        key: " ".join(sorted(operation["responses"]))
        for key, operation in operations(schema).items()
    }
    assert documented == DOCUMENTED_STATUSES
    errors = [
        response
        for key, operation in operations(schema).items()
        if key != ("GET", "/health/")
        for status, response in operation["responses"].items()
        if int(status) >= 400
    ]
    for response in errors:
        assert response["schema"]["$ref"] in {
            "#/definitions/Error",
            "#/definitions/ValidationError",
        }
        assert response["examples"]["application/json"]


@pytest.mark.django_db
def test_the_schema_documents_the_charset_refusal_on_every_operation(api_client):
    ops = operations(api_client.get("/swagger.json").json())

    read = ops[("GET", "/stocks/")]["responses"]["415"]
    write = ops[("POST", "/users/")]["responses"]["415"]
    assert read["examples"]["application/json"] == {
        "detail": "Requests are read as UTF-8 only: send charset=utf-8, or no charset.",
        "code": "unsupported_charset",
    }
    assert "`unsupported_charset`" in write["description"]


@pytest.mark.django_db
def test_the_schema_states_paging_and_one_or_many_quotes(api_client):
    ops = operations(api_client.get("/swagger.json").json())

    paged = ("/users/", "/stocks/{ticker}/history/", "/transactions/{user_id}/")
    for path in (*paged, "/users/{username}/transfers/"):
        page = ops[("GET", path)]["responses"]["200"]["schema"]
        assert set(page["properties"]) == {"count", "next", "previous", "results"}, path
        assert {p["name"] for p in ops[("GET", path)]["parameters"]} >= {"limit", "offset"}
    assert ops[("GET", "/stocks/")]["parameters"] == []  # not paged
    for schema in (
        ops[("POST", "/stocks/")]["parameters"][0]["schema"],
        ops[("POST", "/stocks/")]["responses"]["201"]["schema"],
    ):
        assert "type" not in schema  # an object or a list of them
        assert schema["items"] == {"$ref": "#/definitions/Quote"}
        assert (schema["minItems"], schema["maxItems"]) == (1, 1000)
        assert set(schema["required"]) >= {"ticker", "open_price", "volume"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGED)
@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("limit=abc", {"limit": ["Enter a whole number >= 1."]}),
        ("limit=0", {"limit": ["Enter a whole number >= 1."]}),
        ("limit=1.5", {"limit": ["Enter a whole number >= 1."]}),
        ("limit=%D9%A3", {"limit": ["Enter a whole number >= 1."]}),  # an Arabic-Indic 3
        ("offset=-1", {"offset": ["Enter a whole number >= 0."]}),
        ("offset=1e3", {"offset": ["Enter a whole number >= 0."]}),
        ("offset=" + "9" * 19, {"offset": ["Enter a whole number >= 0."]}),
    ],
)
def test_a_malformed_page_parameter_is_a_400_not_the_default(
    staff_client, user, market, path, query, errors
):
    response = staff_client.get(f"{path.format(user_id=user.pk, username=user.username)}?{query}")

    assert response.status_code == 400
    assert response.json() == errors


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGED)
def test_empty_page_parameters_are_the_defaults_and_a_big_limit_is_capped(
    staff_client, user, market, monkeypatch, path
):
    monkeypatch.setattr(LimitOffsetPagination, "max_limit", 1)
    path = path.format(user_id=user.pk, username=user.username)

    plain = staff_client.get(path)
    empty = staff_client.get(f"{path}?limit=&offset=")
    big = staff_client.get(f"{path}?limit=999999999999999999")

    assert plain.status_code == empty.status_code == big.status_code == 200
    assert empty.json() == plain.json()
    assert big.json()["results"] == plain.json()["results"][:1]


@pytest.mark.django_db
def test_the_schema_is_also_served_as_yaml(api_client):
    response = api_client.get("/swagger.yaml")

    assert response.status_code == 200
    assert b"/users/{username}/portfolio/:" in response.content


@pytest.mark.django_db
def test_redoc_is_served_as_html(api_client):
    response = api_client.get("/redoc/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b"redoc" in response.content


@pytest.mark.django_db
def test_the_admin_login_page_is_served(client):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content


@pytest.mark.django_db
def test_staff_reach_the_admin(client, staff):
    client.force_login(staff)

    response = client.get("/admin/")

    assert response.status_code == 200
