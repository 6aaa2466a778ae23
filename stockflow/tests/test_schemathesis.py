"""Schemathesis over every operation in /swagger.json, as staff and as a plain user.

Checks every response: no 5xx, a documented status code and content type, a body that
matches the documented schema, schema-violating input refused, and schema-valid input
accepted where the schema can say everything the server checks. Bounded for `make test`;
`SCHEMATHESIS_MAX_EXAMPLES=300 pytest stockflow/tests/test_schemathesis.py` runs longer, and
`SCHEMATHESIS_RANDOM=1` draws new examples instead of the same ones every run.
"""

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.db.transaction import atomic, set_rollback
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.throttling import SimpleRateThrottle
from schemathesis.core.parameters import ParameterLocation

from stockflow.fields import MAX_EPOCH, TIMESTAMP_FORMAT
from stocks.tests.factories import StockDataFactory
from transactions.models import FailureReason, TransactionStatus, TransactionType
from transactions.services import transfer_create
from transactions.tests.factories import PositionFactory, TransactionFactory
from users.tests.factories import UserFactory

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "30"))
# The same examples every run unless asked for new ones (SCHEMATHESIS_RANDOM=1).
DERANDOMIZE = os.environ.get("SCHEMATHESIS_RANDOM", "") != "1"
UNTHROTTLED = {"anon": None, "user": None, "login_failures": "1000000/min"}
# Rules Swagger 2.0 cannot state, so a schema-valid request may still be a 400 here:
RULES_BEYOND_THE_SCHEMA = {
    ("POST", "/auth/token/"): "the password must be the user's",
    ("POST", "/users/"): "Django's password rules; a JSON number or string balance",
    ("POST", "/stocks/"): "low <= open, close <= high; no timestamp from the future; a JSON "
    "number or string price",
    ("POST", "/transactions/"): "user and user_id must agree; which prices the order type "
    "takes; a JSON number or string id or price",
    ("PATCH", "/transactions/{user_id}/{transaction_id}/"): "which prices the stored order's "
    "type takes; a JSON number or string price",
    ("POST", "/users/{username}/transfers/"): "a withdrawal needs the buying power (409); a "
    "JSON number or string amount, whose bounds and 2 places the schema states for numbers only",
    ("GET", "/stocks/{ticker}/history/"): "start <= end",
    ("GET", "/transactions/{user_id}/"): "start_timestamp <= end_timestamp",
    ("GET", "/transactions/{user_id}/{start_timestamp}/{end_timestamp}/"): "start <= end",
}
TOLERATE_400 = {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409"]}
}

# Values of our own `timestamp` format: ISO 8601 dates and datetimes, and epoch seconds.
schemathesis.openapi.format(
    TIMESTAMP_FORMAT,
    st.one_of(
        st.dates().map(str),
        st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
        ).map(lambda moment: moment.isoformat().replace("+00:00", "Z")),
        st.integers(min_value=0, max_value=MAX_EPOCH).map(str),
    ),
)

application = get_wsgi_application()
schema = schemathesis.openapi.from_wsgi(
    "/swagger.json",
    application,
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": DERANDOMIZE},
            "operations": [
                {
                    "include-method": method,
                    "include-path": path,
                    "checks": TOLERATE_400,
                }
                for method, path in RULES_BEYOND_THE_SCHEMA
            ],
        }
    ),
)

# What path parameters may name, filled per test by the `world` fixture.
REAL_PATH_VALUES: dict[str, list] = {}


@schema.hook
def flatmap_case(context, case):
    """Half the valid paths name objects that exist, so more than 404s is exercised.

    A path generated to be invalid is left alone: it is what that case is about.
    """
    path = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
    real = {
        name: st.sampled_from(REAL_PATH_VALUES[name])
        for name in case.path_parameters or {}
        if REAL_PATH_VALUES.get(name)
    }
    if not real or path is None or path.mode.is_negative:
        return st.just(case)

    def pointed_at(values: dict):
        case.path_parameters.update(values)
        return case

    return st.one_of(st.just(case), st.fixed_dictionaries(real).map(pointed_at))


@pytest.fixture
def world(db, monkeypatch):
    """Staff, two traders with positions, transactions in every state and a transfer, and
    quotes."""
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, **UNTHROTTLED}
    )
    # As Django's test client does: the handler would otherwise close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)

    staff = UserFactory(username="operator", is_staff=True)
    trader = UserFactory(username="carol", balance=Decimal("25000.00"))
    other = UserFactory(username="bob.smith+1@x", balance=Decimal("0.00"))
    day = datetime(2024, 12, 30, 21, tzinfo=UTC)  # the schema's example quote is 2025-01-02
    for ticker, price in (("AAPL", "190.2500"), ("MSFT", "401.0000"), ("BRK.B", "455.1234")):
        for n in range(3):
            StockDataFactory(
                ticker=ticker, open_price=price, close_price=price, timestamp=day + timedelta(n)
            )
    PositionFactory(user=trader, ticker="AAPL", quantity=10, average_cost="180.0000")
    PositionFactory(user=trader, ticker="GONE", quantity=3, average_cost="5.0000")  # no quotes
    settled = {"settled_at": day + timedelta(hours=2)}
    txns = [
        TransactionFactory(user=trader, timestamp=day),
        TransactionFactory(
            user=trader,
            timestamp=day + timedelta(hours=1),
            transaction_type=TransactionType.SELL,
            status=TransactionStatus.COMPLETED,
            **settled,
        ),
        TransactionFactory(
            user=trader,
            timestamp=day + timedelta(days=1),
            transaction_volume=1000,
            status=TransactionStatus.FAILED,
            failure_reason=FailureReason.INSUFFICIENT_FUNDS,
            **settled,
        ),
        TransactionFactory(
            user=other, timestamp=day, status=TransactionStatus.CANCELLED, **settled
        ),
    ]
    transfer_create(user=trader, direction="withdrawal", amount=Decimal("500.00"))
    REAL_PATH_VALUES.update(
        username=[staff.username, trader.username, other.username],
        user_id=[staff.pk, trader.pk, other.pk],
        transaction_id=[txn.pk for txn in txns],
        ticker=["AAPL", "msft", "BRK.B"],
        start_timestamp=["2024-12-30", "1735592400", "2024-12-31T21:00:00Z"],
        end_timestamp=["2024-12-31", "1767225599", "2025-01-01T21:00:00+00:00"],
    )
    yield {"staff": staff.auth_token.key, "user": trader.auth_token.key}
    REAL_PATH_VALUES.clear()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.parametrize("role", ["staff", "user"])
# Generated usernames make cache keys that memcached could not store; the cache is Redis.
@pytest.mark.filterwarnings("ignore::django.core.cache.backends.base.CacheKeyWarning")
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_to_the_schema(case, world, role):
    # A case that leaves out or garbles the token on purpose is sent as generated.
    negated = schema.is_security_param_negated(case)
    headers = {} if negated else {"Authorization": f"Token {world[role]}"}
    # Each example starts from the same data: its writes roll back, its cache entries go.
    with atomic():
        cache.clear()
        case.call_and_validate(headers=headers)
        set_rollback(True)
